"""Running a model over many items: resumable, sharded with Accelerate, failures recorded per item.

Each process handles every `num_processes`-th item and appends one JSON line per finished item to
its own shard file, so an interrupted run resumes where it stopped and nothing finished is redone.
When all shards are done the main process merges them, in item order, into one JSONL file.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from tqdm.auto import tqdm

from headwise.runs import Run, atomic_write, read_jsonl


def process_state():
    """This process's rank and the world size under `accelerate launch` (a single process otherwise).

    On a machine without CUDA the processes talk over gloo: launch them with
    `accelerate launch --multi_gpu --num_processes N` (accelerate's `--cpu` flag starts only one
    process unless MPI is set up).
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def run_items(run: Run, name: str, items: list[dict], key: str, work: Callable[[list[dict]], list[dict]],
              batch_size: int = 1, desc: str = "items") -> list[dict] | None:
    """Apply `work` to batches of `items` and collect one record per item under `run.dir/<name>.jsonl`.

    Args:
        items: dicts with a unique `key`.
        work: maps a batch of items to one result dict per item. If a batch fails, its items are
            retried one by one, and an item that still fails is recorded as {"error": "..."}.

    Returns:
        On the main process the merged records in item order; None on the other processes.
    """
    state = process_state()
    shard = run.path(f"{name}.rank{state.process_index}.jsonl")
    # A shard can hold a truncated line after a crash: rewrite it clean before appending.
    done_rows = read_jsonl(shard)
    atomic_write(shard, "".join(json.dumps(r) + "\n" for r in done_rows))
    done = {r[key] for r in done_rows}
    mine = items[state.process_index::state.num_processes]
    todo = [it for it in mine if it[key] not in done]
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc=desc, disable=not state.is_local_main_process)
    with open(shard, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            for item, result in zip(batch, _work_or_record(work, batch)):
                f.write(json.dumps({key: item[key], **result}) + "\n")
                f.flush()
            bar.update(len(batch))
    bar.close()
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    by_key = {}
    for rank in range(state.num_processes):
        for row in read_jsonl(run.path(f"{name}.rank{rank}.jsonl")):
            by_key[row[key]] = row
    merged = [by_key[it[key]] for it in items if it[key] in by_key]
    atomic_write(run.path(f"{name}.jsonl"), "".join(json.dumps(r) + "\n" for r in merged))
    return merged


def _work_or_record(work, batch: list[dict]) -> list[dict]:
    try:
        return work(batch)
    except Exception as err:  # noqa: BLE001 - one bad item must not end a long evaluation
        if len(batch) == 1:
            return [{"error": f"{type(err).__name__}: {err}"}]
        return [_one(work, item) for item in batch]


def _one(work, item: dict) -> dict:
    try:
        return work([item])[0]
    except Exception as err:  # noqa: BLE001
        return {"error": f"{type(err).__name__}: {err}"}
