"""Replay buffers: which training items of a finished task are kept for replay."""

from __future__ import annotations

import math
import random

from headwise.errors import HeadwiseError


def buffer_size(ratio: float, task_size: int, task: str = "the task") -> int:
    """N_t = floor(r * |D_t|) for r < 1 (at least one item), r itself for r >= 1 (a count)."""
    if not ratio > 0 or (ratio > 1 and ratio != int(ratio)):
        raise HeadwiseError(f"replay must be a ratio in (0, 1] or a whole count, got {ratio}.")
    if ratio == 1:
        n = task_size
    elif ratio < 1:
        # At least one item: a tiny task at 1% would otherwise have no buffer at all.
        n = max(1, math.floor(ratio * task_size))
    else:
        n = int(ratio)
    if n > task_size:
        raise HeadwiseError(f"a replay count of {n} is larger than {task} ({task_size} training items).")
    return n


def select(items: list, ratio: float, sampling: str, seed: int, task: str = "the task") -> list[int]:
    """Indices of the items kept: the first N in file order (the original code) or N at random (seeded)."""
    n = buffer_size(ratio, len(items), task)
    if sampling == "first":
        return list(range(n))
    rng = random.Random(f"{seed}:{task}")
    return sorted(rng.sample(range(len(items)), n))
