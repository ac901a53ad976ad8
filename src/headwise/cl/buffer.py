"""Replay buffers: which training items of a finished task are kept for replay."""

from __future__ import annotations

import math
import random

from headwise.errors import HeadwiseError


def buffer_size(ratio: float, task_size: int, task: str = "the task", truncate: bool = False) -> int:
    """How many items of a task the buffer keeps.

    The reference (jinghan1he/SEEKR, training/seekr.py `get_dataset`) reads int(|D_t| * r) for r < 1
    and int(r) for r >= 1, so r = 1 keeps one item and 1% of 50 items keeps none; `truncate` does
    exactly that (`CLConfig.buffer_sizes = "truncate"`, the `faithful` preset). By default r = 1 keeps the whole task and a ratio keeps at least one item, since a
    tiny task at 1% would otherwise have no buffer at all.
    """
    if not ratio > 0 or (ratio > 1 and ratio != int(ratio)):
        raise HeadwiseError(f"replay must be a ratio in (0, 1] or a whole count, got {ratio}.")
    if truncate:
        n = int(task_size * ratio) if ratio < 1 else int(ratio)
        if n == 0:
            # The reference builds its replay loader with batch size 0 here, which fails.
            raise HeadwiseError(f"with the reference's buffer sizes (--faithful), a replay ratio of {ratio} keeps "
                                f"int({task_size} x {ratio}) = 0 items of {task}, as the reference code, which cannot "
                                "run on an empty buffer; raise --replay or drop --faithful.")
    elif ratio == 1:
        n = task_size
    elif ratio < 1:
        n = max(1, math.floor(ratio * task_size))
    else:
        n = int(ratio)
    if n > task_size:
        raise HeadwiseError(f"a replay count of {n} is larger than {task} ({task_size} training items).")
    return n


def select(items: list, ratio: float, sampling: str, seed: int, task: str = "the task",
           truncate: bool = False) -> list[int]:
    """Indices of the items kept: the first N in file order (the original code) or N at random (seeded)."""
    n = buffer_size(ratio, len(items), task, truncate)
    if sampling == "first":
        return list(range(n))
    rng = random.Random(f"{seed}:{task}")
    return sorted(rng.sample(range(len(items)), n))
