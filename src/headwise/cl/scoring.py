"""Per-task scores in [0, 1]: TRACE's accuracy, ROUGE-L, edit similarity and SARI, in plain Python."""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Callable

from headwise.errors import HeadwiseError


def _norm(text: str) -> str:
    return " ".join(text.strip().lower().rstrip(".!?;:").split())


def _short_answer(text: str) -> str:
    # TRACE's reasoning variant puts the answer after a marker; use what follows the last one.
    for marker in ("\nAnswer:", "\nReasoning:", "\n回答:", "\n答案:"):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text.strip().splitlines()[0] if text.strip() else ""


def accuracy(pred: str, ref: str, source: str = "") -> float:
    """Exact match of the (first line of the) answer, ignoring case, spacing and final punctuation."""
    return float(_norm(_short_answer(pred)) == _norm(ref))


def first_char(pred: str, ref: str, source: str = "") -> float:
    """TRACE's multiple-choice accuracy: the first character of the answer (A/B/C...)."""
    p, r = pred.strip(), ref.strip()
    return float(bool(p) and bool(r) and p[0].upper() == r[0].upper())


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(pred: str, ref: str, source: str = "") -> float:
    """ROUGE-L F1 over lower-cased word tokens."""
    p, r = _tokens(pred), _tokens(ref)
    if not p or not r:
        return float(p == r)
    lcs = _lcs(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def edit_similarity(pred: str, ref: str, source: str = "") -> float:
    """Character-level similarity ratio in [0, 1] (TRACE's Py150 metric, fuzzywuzzy's ratio / 100)."""
    norm = lambda s: re.sub(r"<(STR|NUM|CHAR)_LIT(:[^>]*)?>", r"<\1_LIT>", s.strip())  # noqa: E731
    return difflib.SequenceMatcher(None, norm(pred), norm(ref)).ratio()


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def sari(pred: str, ref: str, source: str) -> float:
    """SARI (Xu et al. 2016) with one reference: mean over n = 1..4 of the add F1, keep F1 and delete precision."""
    s, p, r = _tokens(source), _tokens(pred), _tokens(ref)
    scores = []
    for n in range(1, 5):
        sg, pg, rg = _ngrams(s, n), _ngrams(p, n), _ngrams(r, n)

        def f1(prec, rec):
            return 2 * prec * rec / (prec + rec) if prec + rec else 0.0

        add_p = pg - sg
        add_r = rg - sg
        add_good = add_p & add_r
        add_prec = sum(add_good.values()) / sum(add_p.values()) if add_p else 1.0 if not add_r else 0.0
        add_rec = sum(add_good.values()) / sum(add_r.values()) if add_r else 1.0
        keep_p, keep_r = sg & pg, sg & rg
        keep_good = keep_p & keep_r
        keep_prec = sum(keep_good.values()) / sum(keep_p.values()) if keep_p else 1.0 if not keep_r else 0.0
        keep_rec = sum(keep_good.values()) / sum(keep_r.values()) if keep_r else 1.0
        del_p, del_r = sg - pg, sg - rg
        del_good = del_p & del_r
        del_prec = sum(del_good.values()) / sum(del_p.values()) if del_p else 1.0
        scores.append((f1(add_prec, add_rec) + f1(keep_prec, keep_rec) + del_prec) / 3)
    return sum(scores) / len(scores)


METRICS: dict[str, Callable[[str, str, str], float]] = {
    "accuracy": accuracy, "first_char": first_char, "rouge_l": rouge_l, "edit_similarity": edit_similarity,
    "sari": sari,
}


def metric(name: str) -> Callable[[str, str, str], float]:
    if name not in METRICS:
        raise HeadwiseError(f"unknown task metric {name!r}; use one of {', '.join(METRICS)}.")
    return METRICS[name]
