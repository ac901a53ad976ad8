"""Runs lmms-eval's POPE scoring (lmms_eval/tasks/pope/utils.py, loaded by path) in its venv.

stdin: JSON {answers, questions}; stdout: one JSON line with the per-answer predictions and the aggregates.
"""

import importlib.util
import json
import sys
import sysconfig
from pathlib import Path

payload = json.loads(sys.stdin.read())
path = Path(sysconfig.get_paths()["purelib"]) / "lmms_eval" / "tasks" / "pope" / "utils.py"
spec = importlib.util.spec_from_file_location("lmms_pope_utils", path)
utils = importlib.util.module_from_spec(spec)
spec.loader.exec_module(utils)


def rows(file):
    with open(file) as f:
        return [json.loads(line) for line in f if line.strip()]


questions = {q["question_id"]: q for q in rows(payload["questions"])}
per_metric = {}
predictions = []
for answer in rows(payload["answers"]):
    doc = {"question_id": answer["question_id"], "answer": questions[answer["question_id"]]["label"]}
    result = utils.pope_process_results(doc, [answer["answer"]])
    predictions.append(result["pope_accuracy"]["prediction"])
    for key, value in result.items():
        per_metric.setdefault(key, []).append(value)
metrics = {
    "accuracy": utils.pope_aggregate_accuracy(per_metric["pope_accuracy"]),
    "precision": utils.pope_aggregate_precision(per_metric["pope_precision"]),
    "recall": utils.pope_aggregate_recall(per_metric["pope_recall"]),
    "f1": utils.pope_aggregate_f1_score(per_metric["pope_f1_score"]),
    "yes_ratio": utils.pope_aggregate_yes_ratio(per_metric["pope_yes_ratio"]),
}
print(json.dumps({"metrics": metrics, "predictions": predictions, "utils_py": str(path)}))
