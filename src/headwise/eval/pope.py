"""POPE (Li et al., 2023): yes/no questions "Is there a <object> in the image?", scored as binary classification.

Answer parser, pinned (answer parsing moves F1 by tenths of a point between codebases, so there is one):
LLaVA's `eval_pope.py` rule, widened as in the OPERA/PAI copy. Keep the text before the first ".", drop
commas, split on whitespace; the answer is "no" when any token, lowercased and stripped of surrounding
punctuation, is "no" or "not" or ends in "n't"; otherwise it is "yes" (an empty answer too).
An answer whose first sentence holds none of these words and no "yes" either ("A.", "There is a dog")
still counts as "yes", as in LLaVA's code, but it is also reported: "unparsed" is the share of such
answers, overall and per split, so a method that stops answering the question is visible.

Matching answers to questions: by "question_id" when every answer carries one (every question must then
carry one too, and each answer's id must name a question); otherwise answer i goes with question i. Questions
without an answer are left out of the metrics and counted as "unanswered".

Metrics, positive class "yes": accuracy, precision, recall, f1, yes_ratio (share of *predicted* yes), n,
the confusion counts, and the same per split when questions carry a "split" or "category" field.
"""

from __future__ import annotations

from pathlib import Path

from headwise.errors import HeadwiseError
from headwise.eval.records import read_records

_PUNCT = "\"'!?;:()[]{}*`\u201c\u201d\u2018\u2019"  # curly quotes too: models emit them


def _first_sentence_words(text: str) -> list[str]:
    first = text.split(".")[0].replace(",", "")
    return [token.strip(_PUNCT).lower().replace("\u2019", "'") for token in first.split()]


def _negative(word: str) -> bool:
    return word in ("no", "not") or word.endswith("n't")


def parse_answer(text: str) -> str:
    """Map a free-text answer to "yes" or "no" with the pinned parser (see the module docstring)."""
    return "no" if any(_negative(w) for w in _first_sentence_words(text)) else "yes"


def is_unparsed(text: str) -> bool:
    """True when the answer's first sentence says neither yes nor no (the parser then counts it as yes)."""
    return not any(w == "yes" or _negative(w) for w in _first_sentence_words(text))


def load_questions(path: str | Path) -> list[dict]:
    """Read POPE questions: JSONL (or a JSON list) of {"question_id"?, "image", "text", "label", "split"?}.

    Returns:
        [{"question_id": str | None, "image", "text", "label": "yes" | "no", "split": str | None, "line"}].

    Raises:
        HeadwiseError: naming the file and line of a malformed record or a repeated question_id.
    """
    questions, seen = [], set()
    for number, rec in read_records(path, "questions"):
        where = f"questions file {path} line {number}"
        label = rec.get("label")
        if not isinstance(label, str) or label.strip().lower() not in ("yes", "no"):
            raise HeadwiseError(f"{where}: \"label\" must be \"yes\" or \"no\", got {label!r}.")
        if "text" not in rec:
            raise HeadwiseError(f"{where}: expected {{\"image\", \"text\", \"label\"}}; \"text\" is missing.")
        qid = None if rec.get("question_id") is None else str(rec["question_id"])
        if qid is not None and qid in seen:
            raise HeadwiseError(f"{where}: question_id {qid} appears twice.")
        seen.add(qid)
        split = rec.get("split", rec.get("category"))
        questions.append({"question_id": qid, "image": rec.get("image"), "text": rec["text"],
                          "label": label.strip().lower(), "split": None if split is None else str(split),
                          "line": number})
    if not questions:
        raise HeadwiseError(f"questions file {path} holds no questions.")
    return questions


def load_answers(path: str | Path) -> list[dict]:
    """Read model answers: JSONL (or a JSON list) of {"question_id"?, "answer"}.

    "text" is accepted in place of "answer", as LLaVA's answer files use it.

    Returns:
        [{"question_id": str | None, "answer": str, "line": int}].

    Raises:
        HeadwiseError: naming the file and line of a malformed record.
    """
    answers = []
    for number, rec in read_records(path, "answers"):
        answer = rec.get("answer", rec.get("text"))
        if not isinstance(answer, str):
            raise HeadwiseError(f"answers file {path} line {number}: expected {{\"question_id\", \"answer\": \"...\"}}.")
        qid = None if rec.get("question_id") is None else str(rec["question_id"])
        answers.append({"question_id": qid, "answer": answer, "line": number})
    if not answers:
        raise HeadwiseError(f"answers file {path} holds no answers.")
    return answers


def match(questions: list[dict], answers: list[dict], answers_name: str = "answers") -> list[tuple[dict, dict]]:
    """Pair answers with questions: by question_id when every answer has one, else by order.

    Raises:
        HeadwiseError: mixed matching modes, an unknown or repeated question_id, or more answers than questions.
    """
    with_id = [a["question_id"] is not None for a in answers]
    if all(with_id):
        by_id = {q["question_id"]: q for q in questions if q["question_id"] is not None}
        if len(by_id) < len(questions):
            raise HeadwiseError(f"{answers_name} match questions by question_id, but some questions have none.")
        pairs, used = [], set()
        for a in answers:
            where = f"{answers_name} line {a['line']}"
            if a["question_id"] not in by_id:
                raise HeadwiseError(f"{where}: question_id {a['question_id']} is not in the questions.")
            if a["question_id"] in used:
                raise HeadwiseError(f"{where}: question_id {a['question_id']} is answered twice.")
            used.add(a["question_id"])
            pairs.append((by_id[a["question_id"]], a))
        return pairs
    if any(with_id):
        first = answers[with_id.index(False)]
        raise HeadwiseError(f"{answers_name} line {first['line']}: no question_id, while other answers have one; "
                            "give it on every line or on none (then answers match questions by order).")
    if len(answers) > len(questions):
        raise HeadwiseError(f"{answers_name} has {len(answers)} answers for {len(questions)} questions.")
    return list(zip(questions, answers))


def metrics(labels: list[str], predictions: list[str]) -> dict:
    """Binary metrics with "yes" as the positive class; a ratio with an empty denominator is 0."""
    tp = sum(g == "yes" and p == "yes" for g, p in zip(labels, predictions))
    fp = sum(g == "no" and p == "yes" for g, p in zip(labels, predictions))
    tn = sum(g == "no" and p == "no" for g, p in zip(labels, predictions))
    fn = sum(g == "yes" and p == "no" for g, p in zip(labels, predictions))
    n = len(labels)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": (tp + tn) / n if n else 0.0, "precision": precision, "recall": recall, "f1": f1,
            "yes_ratio": (tp + fp) / n if n else 0.0, "n": n, "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def score(questions: list[dict], answers: list[dict], answers_name: str = "answers") -> dict:
    """POPE metrics over matched question/answer pairs (see `metrics`), plus "unparsed" (the share of answers
    that say neither yes nor no), "splits" and "unanswered"."""
    pairs = match(questions, answers, answers_name)
    labels = [q["label"] for q, _ in pairs]
    preds = [parse_answer(a["answer"]) for _, a in pairs]
    odd = [is_unparsed(a["answer"]) for _, a in pairs]

    def measure(idx: list[int]) -> dict:
        share = sum(odd[i] for i in idx) / len(idx) if idx else 0.0
        return metrics([labels[i] for i in idx], [preds[i] for i in idx]) | {"unparsed": share}

    result = measure(list(range(len(pairs)))) | {"unanswered": len(questions) - len(pairs)}
    groups: dict[str, list[int]] = {}
    for i, (q, _) in enumerate(pairs):
        if q["split"] is not None:
            groups.setdefault(q["split"], []).append(i)
    if groups:
        result["splits"] = {name: measure(idx) for name, idx in sorted(groups.items())}
    return result


def score_pope_files(answers: str | Path, questions: str | Path) -> dict:
    """Load an answers file and a questions file and score POPE (see `score`)."""
    return score(load_questions(questions), load_answers(answers), answers_name=f"answers file {answers}")
