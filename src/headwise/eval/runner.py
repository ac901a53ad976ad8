"""Running a model over many items: resumable, sharded with Accelerate, failures recorded per item.

Each process handles every `num_processes`-th item and appends one JSON line per finished item to
its own shard file, so an interrupted run resumes where it stopped and nothing finished is redone.
When all shards are done the main process merges them, in item order, into one JSONL file.
"""

from __future__ import annotations

from collections.abc import Callable

from tqdm.auto import tqdm

from headwise.distributed import process_state
from headwise.runs import JsonlLog, Run, read_jsonl, write_jsonl


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
    # A shard can hold a truncated line after a crash: JsonlLog drops it before anything is appended.
    shard = JsonlLog(run.path(f"{name}.rank{state.process_index}.jsonl"))
    done = {r[key] for r in shard.rows}
    mine = items[state.process_index::state.num_processes]
    todo = [it for it in mine if it[key] not in done]
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc=desc, disable=not state.is_local_main_process)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        for item, result in zip(batch, _work_or_record(work, batch)):
            shard.append({key: item[key], **result})
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
    write_jsonl(run.path(f"{name}.jsonl"), merged)
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
