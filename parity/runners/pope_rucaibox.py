"""Runs RUCAIBox/POPE's evaluate.py unchanged, in its venv: JSON {answers, questions, script} on stdin.

evaluate.py opens '' twice (its blank ans_file, then label_file); this runner answers those two opens with the
answers and the questions file, runs the script with runpy and prints its globals' results as one JSON line.
"""

import builtins
import contextlib
import io
import json
import runpy
import sys

payload = json.loads(sys.stdin.read())
targets = [payload["answers"], payload["questions"]]
real_open = builtins.open


def shim(file, *args, **kwargs):
    return real_open(targets.pop(0) if file == "" else file, *args, **kwargs)


builtins.open = shim
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    env = runpy.run_path(payload["script"], run_name="__main__")
builtins.open = real_open
metrics = {"accuracy": env["acc"], "precision": env["precision"], "recall": env["recall"], "f1": env["f1"],
           "yes_ratio": env["yes_ratio"], "tp": env["TP"], "fp": env["FP"], "tn": env["TN"], "fn": env["FN"]}
print(json.dumps({"metrics": metrics, "predictions": [a["answer"] for a in env["answers"]],
                  "stdout": printed.getvalue()}))
