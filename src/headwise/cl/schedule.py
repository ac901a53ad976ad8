"""The order of micro-steps in one epoch: seeded per (seed, task, epoch), so a resumed run replays
exactly the same batches (the original never called set_epoch, so every epoch had the same order)."""

from __future__ import annotations

import hashlib

import torch


def _generator(*key) -> torch.Generator:
    return torch.Generator().manual_seed(int(hashlib.sha1(repr(key).encode()).hexdigest()[:15], 16))


def batches(n_items: int, batch_size: int, *key) -> list[list[int]]:
    order = torch.randperm(n_items, generator=_generator(*key)).tolist()
    return [order[i:i + batch_size] for i in range(0, n_items, batch_size)]


def epoch_steps(n_task: int, n_replay: int, batch_size: int, seed: int, task: int, epoch: int,
                faithful: bool) -> list[tuple[str, list[int]]]:
    """[("task" | "replay", item indices)] for one epoch.

    A replay micro-step runs before every cycle-th new-task micro-step, cycle = floor(task batches /
    replay batches), and the replay order restarts each epoch and whenever it runs out (docs/seekr.md#what-it-computes). faithful keeps the original's bug: a cycle of 0 (more replay than task batches) turns
    replay off; otherwise the cycle is at least 1.
    """
    task_batches = batches(n_task, batch_size, seed, task, epoch, "task")
    if n_replay == 0:
        return [("task", b) for b in task_batches]
    replay_batches = batches(n_replay, batch_size, seed, task, epoch, "replay")
    cycle = len(task_batches) // len(replay_batches)
    if cycle == 0 and faithful:
        return [("task", b) for b in task_batches]
    cycle = max(cycle, 1)
    steps, r = [], 0
    for k, b in enumerate(task_batches):
        if k % cycle == 0:
            steps.append(("replay", replay_batches[r % len(replay_batches)]))
            r += 1
        steps.append(("task", b))
    return steps


def step_seed(seed: int, task: int, epoch: int, step: int) -> int:
    return _generator(seed, task, epoch, step, "dropout").initial_seed()
