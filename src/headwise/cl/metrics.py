"""Continual-learning summaries of an accuracy matrix R, where R[j][i] is the score on task i after
learning task j (scores in [0, 1]; rows may be partial while a run is still going)."""

from __future__ import annotations

from collections.abc import Sequence

from headwise.errors import HeadwiseError


def _square(matrix: Sequence[Sequence[float]]) -> int:
    t = len(matrix)
    if t == 0 or any(len(row) != t for row in matrix):
        raise HeadwiseError("the accuracy matrix must be square (one row per learned task, one column per task).")
    return t


def overall_performance(matrix) -> float:
    """OP: the mean score over all tasks after the last one, `(1/T) sum_i R[T][i]`."""
    t = _square(matrix)
    return sum(matrix[-1]) / t


def backward_transfer(matrix, convention: str = "standard") -> float:
    """BWT: how much learning later tasks changed the earlier ones (negative: forgetting).

    standard: `(1/(T-1)) sum_{i<T} (R[T][i] - R[i][i])`, as in GEM (Lopez-Paz & Ranzato 2017);
    paper: `(1/T) sum_{i<=T} (R[T][i] - R[i][i])`, as TRACE and SEEKR compute it (the i = T term is 0).
    """
    t = _square(matrix)
    diffs = [matrix[-1][i] - matrix[i][i] for i in range(t - 1)]
    if convention == "standard":
        return sum(diffs) / (t - 1) if t > 1 else 0.0
    if convention == "paper":
        return sum(diffs) / t
    raise HeadwiseError(f"unknown BWT convention {convention!r}; use standard or paper.")


def forward_transfer(matrix, base: Sequence[float]) -> float:
    """FWT: `(1/(T-1)) sum_{i>1} (R[i-1][i] - b_i)`, with b_i the untrained model's score on task i."""
    t = _square(matrix)
    if len(base) != t:
        raise HeadwiseError(f"FWT needs one base score per task: {len(base)} for {t} tasks.")
    if t == 1:
        return 0.0
    return sum(matrix[i - 1][i] - base[i] for i in range(1, t)) / (t - 1)


def summarize(matrix, base: Sequence[float] | None) -> dict:
    out = {"op": overall_performance(matrix), "bwt": backward_transfer(matrix, "standard"),
           "bwt_paper": backward_transfer(matrix, "paper"),
           "bwt_conventions": {"bwt": "1/(T-1) over tasks 1..T-1", "bwt_paper": "1/T over tasks 1..T (SEEKR/TRACE)"}}
    out["fwt"] = forward_transfer(matrix, base) if base is not None else None
    return out


def op_standard_error(item_scores: Sequence[Sequence[float]]) -> float | None:
    """The standard error of OP from the per-item scores of the last row, one list per task:
    `sqrt(sum_i s_i^2 / n_i) / T`, with s_i^2 the sample variance (n_i - 1) of task i's item scores (the test
    items are a sample; the tasks' errors are independent). None when a task has fewer than 2 items."""
    if not item_scores or any(len(s) < 2 for s in item_scores):
        return None
    total = 0.0
    for scores in item_scores:
        n = len(scores)
        mean = sum(scores) / n
        total += sum((x - mean) ** 2 for x in scores) / (n - 1) / n
    return total ** 0.5 / len(item_scores)
