"""POPE against RUCAIBox/POPE's evaluate.py and lmms-eval's POPE scoring (goldens from parity/pope.py).

One test per row of docs/parity.md. The parsers differ on purpose; which answers they read differently is pinned
here, so a change on either side shows as a failure rather than a silently moved F1.
"""

import json

import pytest

from headwise.eval import pope
from parity.harness import INPUTS, load_golden

QUESTIONS, ANSWERS = INPUTS / "pope_questions.jsonl", INPUTS / "pope_answers.jsonl"

# The answers RUCAIBox's parser reads as "yes" and headwise as "no": it splits on " " and looks for exactly
# "No", "no" or "not", so capitals, punctuation glued to the word and n't contractions slip through.
RUCAIBOX_READS_YES = {"NO", "no!", "There isn't a dog.", "I don't see a dog.", "I can't tell.", "Not sure.",
                      "\u201cNo\u201d", "\"No\"", "(no)"}


@pytest.fixture(scope="module")
def data():
    labels = [json.loads(line)["label"] for line in QUESTIONS.read_text().splitlines()]
    answers = [json.loads(line)["answer"] for line in ANSWERS.read_text().splitlines()]
    return labels, answers


def test_rucaibox_metrics_from_the_same_predictions(data):
    golden = load_golden("pope_rucaibox", "pope.py")["outputs"]
    labels, _ = data
    ours = pope.metrics(labels, golden["predictions"])
    for key, value in golden["metrics"].items():
        assert ours[key] == value, key


def test_rucaibox_parser_differences_are_the_listed_ones(data):
    golden = load_golden("pope_rucaibox", "pope.py")["outputs"]
    _, answers = data
    differ = {a for a, ref in zip(answers, golden["predictions"]) if pope.parse_answer(a) != ref}
    assert differ == RUCAIBOX_READS_YES
    assert all(ref == "yes" for a, ref in zip(answers, golden["predictions"]) if a in differ)


def test_lmms_eval_aggregates_from_exact_answers(data):
    """lmms-eval compares the lowercased, stripped answer with the label: anything but exactly "yes" or "no" is
    wrong for accuracy and left out of precision and recall; its yes_ratio is the labels' share of yes."""
    golden = load_golden("pope_lmms_eval", "pope.py")["outputs"]
    labels, answers = data
    assert golden["predictions"] == [a.lower().strip() for a in answers]
    exact = [i for i, p in enumerate(golden["predictions"]) if p in ("yes", "no")]
    ours = pope.metrics([labels[i] for i in exact], [golden["predictions"][i] for i in exact])
    for key in ("precision", "recall", "f1"):
        assert ours[key] == pytest.approx(golden["metrics"][key], abs=1e-12), key
    assert ours["accuracy"] * len(exact) / len(labels) == pytest.approx(golden["metrics"]["accuracy"], abs=1e-12)
    assert golden["metrics"]["yes_ratio"] == labels.count("yes") / len(labels)


def test_headwise_on_the_parity_inputs(data):
    """headwise's own figures on the same files, as docs/parity.md quotes them beside the references'."""
    result = pope.score(pope.load_questions(QUESTIONS), pope.load_answers(ANSWERS))
    rucaibox = load_golden("pope_rucaibox", "pope.py")["outputs"]["metrics"]
    assert (result["tp"], result["fp"], result["tn"], result["fn"]) == (17, 17, 23, 23)
    assert (rucaibox["tp"], rucaibox["fp"], rucaibox["tn"], rucaibox["fn"]) == (26, 26, 14, 14)
