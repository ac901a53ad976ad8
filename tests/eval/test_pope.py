"""POPE: the pinned answer parser, matching, and metrics on a hand-computed confusion matrix."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from headwise.cli.eval import app
from headwise.errors import HeadwiseError
from headwise.eval.pope import load_answers, load_questions, match, metrics, parse_answer, score, score_pope_files


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def question(i, label, split=None):
    q = {"question_id": i, "image": f"COCO_val2014_{i:012d}.jpg", "text": "Is there a dog in the image?",
         "label": label}
    return q | ({"split": split} if split else {})


@pytest.mark.parametrize("answer, parsed", [
    ("No, there is not.", "no"),
    ("Yes, there is a dog.", "yes"),
    ("There isn't any dog.", "no"),
    ("There isn\u2019t a dog in the image.", "no"),
    ("no", "no"),
    ("NO!", "no"),
    ("Yes", "yes"),
    ("yes, no doubt about it", "no"),  # the parser is a token rule, not a judge: any negation word wins
    ("Yes. There is no cat, though.", "yes"),  # only the first sentence counts
    ("There is a dog, not a cat", "no"),
    ("I see a notebook and a nose.", "yes"),  # "no" inside a word is no negation
    ("", "yes"),
])
def test_parse_answer(answer, parsed):
    assert parse_answer(answer) == parsed


def test_metrics_on_a_hand_computed_confusion_matrix():
    labels = ["yes"] * 6 + ["no"] * 4
    preds = ["yes", "yes", "yes", "yes", "no", "no"] + ["yes", "no", "no", "no"]  # tp 4, fn 2, fp 1, tn 3
    m = metrics(labels, preds)
    assert (m["tp"], m["fn"], m["fp"], m["tn"], m["n"]) == (4, 2, 1, 3, 10)
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["precision"] == pytest.approx(4 / 5)
    assert m["recall"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6))
    assert m["yes_ratio"] == pytest.approx(5 / 10)  # predicted yes, not ground-truth yes (which is 6/10)


def test_metrics_without_predicted_yes_are_zero_not_nan():
    m = metrics(["yes", "no"], ["no", "no"])
    assert (m["precision"], m["recall"], m["f1"], m["accuracy"]) == (0.0, 0.0, 0.0, 0.5)


def test_score_matches_by_question_id_in_any_order_with_splits(tmp_path):
    qs = load_questions(write_jsonl(tmp_path / "q.jsonl", [
        question(1, "yes", "random"), question(2, "no", "random"), question(3, "yes", "adversarial"),
        question(4, "no", "adversarial")]))
    ans = load_answers(write_jsonl(tmp_path / "a.jsonl", [
        {"question_id": 4, "answer": "Yes, there is."}, {"question_id": 1, "answer": "Yes."},
        {"question_id": 3, "text": "No, there isn't."}]))
    r = score(qs, ans)
    assert (r["tp"], r["fp"], r["tn"], r["fn"], r["n"], r["unanswered"]) == (1, 1, 0, 1, 3, 1)
    assert r["splits"]["random"] == metrics(["yes"], ["yes"]) | {"unparsed": 0.0}
    assert r["splits"]["adversarial"]["accuracy"] == 0.0 and r["splits"]["adversarial"]["n"] == 2


def test_score_matches_by_order_without_ids(tmp_path):
    qs = tmp_path / "q.json"
    qs.write_text(json.dumps([{"image": "a.jpg", "text": "Is there a cat?", "label": "Yes"},
                              {"image": "b.jpg", "text": "Is there a cat?", "label": "no"}]))
    ans = write_jsonl(tmp_path / "a.jsonl", [{"answer": "There is no cat."}, {"answer": "No."}])
    r = score_pope_files(ans, qs)
    assert (r["tp"], r["fn"], r["tn"], r["accuracy"]) == (0, 1, 1, 0.5)
    assert "splits" not in r


@pytest.mark.parametrize("rows, message", [
    ([{"question_id": 9, "answer": "yes"}], "line 1: question_id 9 is not in the questions"),
    ([{"question_id": 1, "answer": "yes"}, {"question_id": 1, "answer": "no"}], "line 2: question_id 1 is answered"),
    ([{"question_id": 1, "answer": "yes"}, {"answer": "no"}], "line 2: no question_id"),
    ([{"answer": "yes"}] * 3, "3 answers for 2 questions"),
])
def test_matching_errors(tmp_path, rows, message):
    qs = load_questions(write_jsonl(tmp_path / "q.jsonl", [question(1, "yes"), question(2, "no")]))
    with pytest.raises(HeadwiseError, match=message):
        match(qs, load_answers(write_jsonl(tmp_path / "a.jsonl", rows)))


@pytest.mark.parametrize("text, message", [
    ('{"question_id": 1, "image": "a", "text": "t", "label": "yes"}\n{"question_id": 2, "text": "t"', "line 2: invalid"),
    ('{"question_id": 1, "image": "a", "text": "t", "label": "maybe"}\n', "line 1: \"label\" must be"),
    ('\n{"image": "a", "label": "no"}\n', "line 2: .*\"text\" is missing"),
    ('{"question_id": 1, "text": "t", "label": "no"}\n{"question_id": 1, "text": "t", "label": "no"}\n',
     "line 2: question_id 1 appears twice"),
    ("[1, 2]", "item 1: expected a JSON object"),
    ("\n\n", "holds no questions"),
])
def test_malformed_questions_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "q.jsonl"
    path.write_text(text)
    with pytest.raises(HeadwiseError, match=message) as err:
        load_questions(path)
    assert str(path) in str(err.value)


def test_malformed_answers_name_file_and_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"question_id": 1, "answer": "yes"}\n{"question_id": 2}\n')
    with pytest.raises(HeadwiseError, match=r"a.jsonl line 2: expected"):
        load_answers(path)
    with pytest.raises(HeadwiseError, match="does not exist"):
        load_answers(tmp_path / "missing.jsonl")


def test_cli_pope_text_and_json(tmp_path):
    qs = write_jsonl(tmp_path / "q.jsonl", [question(1, "yes", "popular"), question(2, "no", "popular")])
    ans = write_jsonl(tmp_path / "a.jsonl", [{"question_id": 1, "answer": "Yes"}, {"question_id": 2, "answer": "Yes"}])
    runner = CliRunner()
    text = runner.invoke(app, ["pope", "--answers", str(ans), "--questions", str(qs)])
    assert text.exit_code == 0, text.output
    assert "accuracy  50.0" in text.output and "yes 100.0%" in text.output and "popular" in text.output
    res = runner.invoke(app, ["pope", "--answers", str(ans), "--questions", str(qs), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["f1"] == pytest.approx(2 / 3) and out["splits"]["popular"]["n"] == 2


def test_cli_pope_help_explains_every_option():
    res = CliRunner().invoke(app, ["pope", "--help"])
    assert res.exit_code == 0
    for option in ("--answers", "--questions", "--out", "--json"):
        assert option in res.output


def test_cli_bad_answers_raise_headwise_error_on_the_bare_app(tmp_path):
    qs = write_jsonl(tmp_path / "q.jsonl", [question(1, "yes")])
    ans = tmp_path / "a.jsonl"
    ans.write_text("{oops\n")
    res = CliRunner().invoke(app, ["pope", "--answers", str(ans), "--questions", str(qs)])
    assert isinstance(res.exception, HeadwiseError) and "a.jsonl line 1: invalid JSON" in str(res.exception)


def test_headwise_eval_pope_exits_2_without_traceback(tmp_path):
    qs = write_jsonl(tmp_path / "q.jsonl", [question(1, "yes")])
    ans = write_jsonl(tmp_path / "a.jsonl", [{"question_id": 1, "answer": "yes"}, {"question_id": 7, "answer": "no"}])
    proc = subprocess.run([sys.executable, "-m", "headwise.cli", "eval", "pope", "--answers", str(ans),
                           "--questions", str(qs)], capture_output=True, text=True, timeout=120,
                           check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "line 2: question_id 7 is not in the questions" in proc.stderr


def test_cli_pope_refuses_partial_answers_unless_allowed(tmp_path):
    """Issue 16: 2 answers for 5 questions used to score as n=2 with exit 0; now exit 2 naming the 3 missing."""
    qs = write_jsonl(tmp_path / "q.jsonl", [question(i, "yes" if i % 2 else "no") for i in range(1, 6)])
    ans = write_jsonl(tmp_path / "a.jsonl", [{"question_id": 1, "answer": "Yes"}, {"question_id": 2, "answer": "No"}])
    cmd = [sys.executable, "-m", "headwise.cli", "eval", "pope", "--answers", str(ans), "--questions", str(qs)]
    proc = subprocess.run(cmd + ["--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "3 of 5 questions have no answer" in proc.stderr and "--allow-partial" in proc.stderr
    assert not (tmp_path / "run").exists()  # nothing is saved for a refused file
    res = CliRunner().invoke(app, ["pope", "--answers", str(ans), "--questions", str(qs), "--allow-partial", "--json"])
    assert res.exit_code == 0, res.output
    assert "warning: 3 of 5 questions have no answer" in res.stderr
    out = json.loads(res.stdout)
    assert out["n"] == 2 and out["unanswered"] == 3 and out["accuracy"] == 1.0


@pytest.mark.parametrize("answer, unparsed", [
    ("A.\nA.\nA.", True), ("There is a dog.", True), ("", True), ("Yes", False), ("No.", False),
    ("There isn't one.", False), ("Not really", False), ("A. Yes.", True),  # only the first sentence is read
])
def test_unparsed_answers_count_as_yes_and_are_reported(tmp_path, answer, unparsed):
    from headwise.eval.pope import is_unparsed

    assert is_unparsed(answer) is unparsed
    if unparsed:
        assert parse_answer(answer) == "yes"  # LLaVA's pinned parser is kept


def test_score_and_cli_report_the_unparsed_share(tmp_path):
    qs = write_jsonl(tmp_path / "q.jsonl", [question(i, "yes" if i % 2 else "no", "random" if i < 3 else "popular")
                                            for i in range(1, 5)])
    ans = write_jsonl(tmp_path / "a.jsonl", [{"question_id": 1, "answer": "A.\nA."}, {"question_id": 2, "answer": "No"},
                                             {"question_id": 3, "answer": "Yes"}, {"question_id": 4, "answer": "B"}])
    r = score_pope_files(ans, qs)
    assert r["unparsed"] == 0.5 and r["splits"]["random"]["unparsed"] == 0.5 and r["splits"]["popular"]["unparsed"] == 0.5
    assert (r["tp"], r["fp"]) == (2, 1)  # the unparsed answers were scored as yes
    out = CliRunner().invoke(app, ["pope", "--answers", str(ans), "--questions", str(qs)])
    assert out.exit_code == 0 and "unparsed 50.0%" in out.output
