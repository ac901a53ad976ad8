"""The order of micro-steps in one epoch: seeded per (seed, task, epoch), so a resumed run replays
exactly the same batches (the original never called set_epoch, so every epoch had the same order)."""

from __future__ import annotations

import hashlib
import math

import torch

from headwise.errors import HeadwiseError


def _generator(*key) -> torch.Generator:
    return torch.Generator().manual_seed(int(hashlib.sha1(repr(key).encode()).hexdigest()[:15], 16))


def batches(n_items: int, batch_size: int, *key) -> list[list[int]]:
    order = torch.randperm(n_items, generator=_generator(*key)).tolist()
    return [order[i:i + batch_size] for i in range(0, n_items, batch_size)]


def epoch_steps(n_task: int, n_replay: int, batch_size: int, seed: int, task: int, epoch: int,
                truncate_cycle: bool, cycle: int | None = None) -> list[tuple[str, list[int]]]:
    """[("task" | "replay", item indices)] for one epoch.

    As the reference training loop (jinghan1he/SEEKR, training/seekr.py, `train_one_task`): with
    k the 0-based index of a new-task micro-step, one replay micro-step runs just before task step k
    whenever (k + 1) % cycle == 0, i.e. after cycle - 1 task steps. cycle is given (the reference's
    --replay_cycle) or, when None, floor(task batches / replay batches). The replay order restarts each
    epoch and whenever it runs out. truncate_cycle (`CLConfig.auto_cycle = "truncate"`, the `faithful`
    preset, docs/seekr.md#faithful-mode) keeps the reference's bug: an automatic cycle of 0 (more replay
    than task batches) turns replay off; otherwise the automatic cycle is at least 1.
    """
    task_batches = batches(n_task, batch_size, seed, task, epoch, "task")
    if n_replay == 0:
        return [("task", b) for b in task_batches]
    replay_batches = batches(n_replay, batch_size, seed, task, epoch, "replay")
    if cycle is not None and cycle < 1:
        raise HeadwiseError(f"the replay cycle must be a positive number of task steps, not {cycle}.")
    if cycle is None:
        cycle = len(task_batches) // len(replay_batches)
        if cycle == 0 and truncate_cycle:
            return [("task", b) for b in task_batches]
        cycle = max(cycle, 1)
    steps, r = [], 0
    for k, b in enumerate(task_batches):
        if (k + 1) % cycle == 0:
            steps.append(("replay", replay_batches[r % len(replay_batches)]))
            r += 1
        steps.append(("task", b))
    return steps


def task_batch_count(n_items: int, batch_size: int) -> int:
    return -(-n_items // batch_size)


def step_seed(seed: int, task: int, epoch: int, step: int) -> int:
    return _generator(seed, task, epoch, step, "dropout").initial_seed()


def init_seed(seed: int, what: str) -> int:
    """The seed of a random initialisation of the run (`what`, e.g. "lora"), derived from the run's seed."""
    return _generator(seed, what, "init").initial_seed()


def lr_factor(schedule: str, step: int, total: int, warmup: int = 0) -> float:
    """The learning-rate multiplier of optimizer step `step` (0-based) of `total` in one task, by transformers'
    formulas (transformers.optimization: get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup
    with half a cycle): a linear warm-up over `warmup` steps, then 1 (constant) or a half cosine down to 0."""
    if step < warmup:
        return step / max(1, warmup)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
