"""POPE parity: RUCAIBox/POPE's evaluate.py and lmms-eval's POPE scoring on messy answers, beside headwise's.

    .venv/bin/python parity/pope.py            # writes parity/goldens/pope_rucaibox.json, pope_lmms_eval.json
    .venv/bin/python parity/pope.py --inputs   # rebuilds parity/inputs/pope_*.jsonl (deterministic)

The inputs pair every answer variant below with both labels, so each parser decision shows in the confusion
counts. headwise's side is computed by tests/parity/test_pope.py from the same files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

POPE_REPO, POPE_COMMIT = "RUCAIBox/POPE", "3df3ba1b110ecce25696989577fad583b67d4239"
LMMS_EVAL = "lmms-eval==0.7.3"
QUESTIONS = harness.INPUTS / "pope_questions.jsonl"
ANSWERS = harness.INPUTS / "pope_answers.jsonl"

# What models answer to "Is there a <object> in the image?": clean, capitalised, punctuated, hedged, empty.
ANSWERS_VARIANTS = [
    "Yes", "yes", "Yes.", "YES", "yes!", "Yes, there is a dog.", "Yes, there is a dog in the image.",
    "No", "no", "No.", "NO", "no!", "No, there is no dog.", "No there is not.", "No, it is not there",
    "There is no dog in the image.", "There is not a dog.", "There isn't a dog.", "I don't see a dog.",
    "I cannot tell", "I can't tell.", "Not sure.", "Maybe.", "", " ", "The image shows a dog.",
    "A dog is sitting on the couch. No other animals.", "Yes. No wait", "no. yes", "Nope.", "Yes; no.",
    "\u201cNo\u201d", "\"No\"", "(no)", "Answer: no", "Answer: yes", "Definitely yes, a dog",
    "No, there isn\u2019t.", "Yes, but not clearly.", "yes, not a cat but a dog",
]


def build_inputs() -> None:
    """Every variant once with label yes and once with label no, question ids 0..2n-1."""
    questions, answers = [], []
    for i, (text, label) in enumerate((t, lab) for lab in ("yes", "no") for t in ANSWERS_VARIANTS):
        questions.append({"question_id": i, "image": f"COCO_val2014_{i:012d}.jpg",
                          "text": "Is there a dog in the image?", "label": label})
        answers.append({"question_id": i, "answer": text})
    for path, rows in ((QUESTIONS, questions), (ANSWERS, answers)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"wrote {path.relative_to(harness.ROOT)}")


def main() -> None:
    if "--inputs" in sys.argv or not QUESTIONS.is_file():
        build_inputs()
    payload = {"answers": str(ANSWERS), "questions": str(QUESTIONS)}

    repo = harness.repo_at(POPE_REPO, POPE_COMMIT, ["evaluate.py"])
    py = harness.venv("pope", [f"--no-deps {LMMS_EVAL}"])
    out = harness.run_in(py, "pope_rucaibox", payload | {"script": str(repo / "evaluate.py")})
    harness.write_golden(
        "pope_rucaibox",
        {"repo": POPE_REPO, "commit": POPE_COMMIT, "files": ["evaluate.py:9-21 (parser)", "evaluate.py:36-62 (metrics)"],
         "script": "pope.py"},
        [QUESTIONS, ANSWERS],
        ["evaluate.py reads ans_file = '' and label_file = '' (lines 3-4, blank in the repository): the runner "
         "answers its first open('') with the answers file and its second with the labels file, and runs the "
         "script unchanged with runpy; the metrics are read from the script's globals (TP, FP, TN, FN, acc, "
         "precision, recall, f1, yes_ratio) and the parsed answers from its `answers` list."],
        out)

    out = harness.run_in(py, "pope_lmms_eval", payload)
    harness.write_golden(
        "pope_lmms_eval",
        {"package": LMMS_EVAL, "files": ["lmms_eval/tasks/pope/utils.py:17-28 (process_results)",
                                         "lmms_eval/tasks/pope/utils.py:31-84 (aggregates)"],
         "script": "pope.py"},
        [QUESTIONS, ANSWERS],
        ["installed with --no-deps; lmms_eval/tasks/pope/utils.py is loaded by file path (it imports nothing), "
         "so the framework around it (datasets, the model loop, the yaml task) is not run: pope_process_results "
         "gets each answer as results[0] and a doc {question_id, answer: label}, the five pope_aggregate_* "
         "functions get the lists it returns, as the framework hands them."],
        out)


if __name__ == "__main__":
    main()
