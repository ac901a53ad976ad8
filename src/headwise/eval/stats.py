"""Summaries of repeated runs (seeds)."""

from __future__ import annotations

import statistics


def mean_std(values: list[float]) -> dict:
    """Mean and population standard deviation (0 for one value), with the values kept for re-analysis."""
    return {"mean": statistics.mean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "values": values}
