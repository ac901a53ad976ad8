"""The untrained model's score row, shared by the runs of a table.

Every cell of a `cl table` evaluates the same untrained model on the same test items with the same
decoding settings before it learns anything, so its base row is the same in every cell (greedy decoding;
method, replay ratio and seed do not enter it). At 500 test items per task that row costs as much as a
third of a cell's evaluation on a CPU, so a table computes it once: the first cell to need it holds a lock
while it evaluates, writes it under OUT/base-rows/, and the others read it.

The key is everything the row depends on: the model's name, its weights' dtype and device type, the
tokenizer, each task's name, metric and test items, and the evaluation settings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from headwise.runs import atomic_write

EVAL_FIELDS = ("max_new_tokens", "max_len", "eval_batch_size", "eval_max")


def base_key(model, tokenizer, tasks: list, cfg) -> str:
    """A hash of everything the base row depends on."""
    param = next(model.parameters())
    items = [{"name": t.name, "metric": t.metric, "test": [[it["prompt"], it["answer"]] for it in t.test]}
             for t in tasks]
    what = {"model": getattr(model.config, "_name_or_path", ""), "dtype": str(param.dtype),
            "device": param.device.type, "tokenizer": getattr(tokenizer, "name_or_path", ""),
            "tasks": items, **{f: getattr(cfg, f) for f in EVAL_FIELDS}}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path):
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        yield


def read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def shared_row(path: Path, compute: Callable[[], dict]) -> dict:
    """The base row stored at `path`, or `compute()`'s, stored there; cells racing for it compute it once."""
    with _locked(path):
        found = read(path)
        if found is not None:
            return found
        row = compute()
        atomic_write(path, json.dumps(row))
        return row


def store(path: Path, row: dict) -> None:
    """Keep a row a run already has (a resumed cell) for the cells that still need it."""
    with _locked(path):
        if read(path) is None:
            atomic_write(path, json.dumps(row))
