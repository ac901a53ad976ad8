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


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _sari_ngram(src: Counter, pred: Counter, refs: Counter, numref: int) -> tuple[float, float, float]:
    """Keep F1, delete precision and add F1 of one n-gram order, as HF evaluate's `sari` (the SEEKR/TRACE metric)
    computes them: source and prediction counts are scaled by the number of references, keep and delete
    precisions are averaged per distinct n-gram, additions count distinct n-grams, and 0/0 is 1."""
    src = Counter({g: n * numref for g, n in src.items()})
    pred_rep = Counter({g: n * numref for g, n in pred.items()})
    kept, kept_all = src & pred_rep, src & refs
    kept_good = kept & refs
    keep_p = sum(kept_good[g] / kept[g] for g in kept_good) / len(kept) if kept else 1.0
    keep_r = sum(kept_good.values()) / sum(kept_all.values()) if kept_all else 1.0
    deleted = src - pred_rep
    deleted_good = deleted - refs  # deleted and in no reference
    del_p = sum(deleted_good[g] / deleted[g] for g in deleted_good) / len(deleted) if deleted else 1.0
    added, added_all = set(pred) - set(src), set(refs) - set(src)
    added_good = added & set(refs)
    add_p = len(added_good) / len(added) if added else 1.0
    add_r = len(added_good) / len(added_all) if added_all else 1.0
    return _f1(keep_p, keep_r), del_p, _f1(add_p, add_r)


def sari(pred: str, ref: str | list[str], source: str) -> float:
    """SARI (Xu et al. 2016) as HF evaluate's `sari` / 100, which TRACE scores 20Minuten with: the mean over the keep
    F1, the delete precision and the add F1, each averaged over n = 1..4. One reference or a list of them. Tokens
    are lower-cased words and punctuation marks (HF applies sacrebleu's 13a tokenizer; they agree on plain text)."""
    refs = [ref] if isinstance(ref, str) else list(ref)
    s, p, rs = _tokens(source), _tokens(pred), [_tokens(r) for r in refs]
    parts = [_sari_ngram(_ngrams(s, n), _ngrams(p, n), sum((_ngrams(r, n) for r in rs), Counter()), len(rs))
             for n in range(1, 5)]
    return sum(sum(part[i] for part in parts) / 4 for i in range(3)) / 3


METRICS: dict[str, Callable[[str, str, str], float]] = {
    "accuracy": accuracy, "first_char": first_char, "rouge_l": rouge_l, "edit_similarity": edit_similarity,
    "sari": sari,
}


def metric(name: str) -> Callable[[str, str, str], float]:
    if name not in METRICS:
        raise HeadwiseError(f"unknown task metric {name!r}; use one of {', '.join(METRICS)}.")
    return METRICS[name]
