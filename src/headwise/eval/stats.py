"""Summaries of repeated runs (seeds), and rank statistics (AUROC, Spearman) for analyses."""

from __future__ import annotations

import statistics


def mean_std(values: list[float]) -> dict:
    """Mean and population standard deviation (0 for one value), with the values kept for re-analysis."""
    return {"mean": statistics.mean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "values": values}


def auroc(higher, lower, higher_weights=None, lower_weights=None) -> float | None:
    """P(a score from `higher` exceeds one from `lower`), ties counting half (the Mann-Whitney AUC).

    Weights count each score that many times (a bootstrap resample). None when either side is empty.
    """
    import numpy as np

    a, b = np.asarray(higher, dtype=float), np.asarray(lower, dtype=float)
    wa = np.ones(len(a)) if higher_weights is None else np.asarray(higher_weights, dtype=float)
    wb = np.ones(len(b)) if lower_weights is None else np.asarray(lower_weights, dtype=float)
    if wa.sum() == 0 or wb.sum() == 0:
        return None
    wins = (a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])
    return float(wa @ wins @ wb / (wa.sum() * wb.sum()))


def average_ranks(values) -> "np.ndarray":  # noqa: F821 - numpy is imported lazily
    """Ranks 0..n-1, tied values sharing the mean of their ranks."""
    import numpy as np

    _, inverse, counts = np.unique(np.asarray(values, dtype=float), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends - 1) / 2)[inverse]


def spearman(a, b) -> float:
    """Spearman's rank correlation (Pearson's r of the average ranks); 0 when either side is constant."""
    import numpy as np

    ra, rb = average_ranks(np.ravel(a)), average_ranks(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / denom) if denom else 0.0
