"""The resumable item runner behind `eval chair`, `eval pope` and the testbed table: an interrupted run redoes only
the items it had not finished, and a last line cut short by a crash is redone, not trusted."""

import json

import pytest

from headwise.eval.runner import run_items
from headwise.runs import Run

ITEMS = [{"id": i} for i in range(6)]


def tens(calls):
    def work(batch):
        calls.extend(it["id"] for it in batch)
        return [{"v": 10 * it["id"]} for it in batch]
    return work


def test_an_interrupted_run_resumes_without_redoing_finished_items(tmp_path):
    run = Run(tmp_path / "r", "test", {})
    first = []

    def stops_at_three(batch):
        if batch[0]["id"] == 3:
            raise KeyboardInterrupt  # Ctrl-C: not an item failure, the run stops
        return tens(first)(batch)

    with pytest.raises(KeyboardInterrupt):
        run_items(run, "x", ITEMS, "id", stops_at_three)
    assert first == [0, 1, 2] and not run.path("x.jsonl").exists()
    second = []
    merged = run_items(Run(tmp_path / "r", "test", {}), "x", ITEMS, "id", tens(second))
    assert second == [3, 4, 5]  # 0, 1 and 2 were finished: not computed again
    assert merged == [{"id": i, "v": 10 * i} for i in range(6)]
    assert [json.loads(l) for l in run.path("x.jsonl").read_text().splitlines()] == merged


def test_a_last_line_cut_short_is_redone_and_the_shard_rewritten_clean(tmp_path):
    run = Run(tmp_path / "r", "test", {})
    # What a kill during a write leaves: two finished items (with values work would not give) and half a line.
    run.path("x.rank0.jsonl").write_text('{"id": 0, "v": -1}\n{"id": 1, "v": -2}\n{"id": 2, "v"')
    calls = []
    merged = run_items(run, "x", ITEMS, "id", tens(calls), batch_size=2)
    assert calls == [2, 3, 4, 5]
    assert merged == [{"id": 0, "v": -1}, {"id": 1, "v": -2}] + [{"id": i, "v": 10 * i} for i in range(2, 6)]
    assert [json.loads(l) for l in run.path("x.rank0.jsonl").read_text().splitlines()] == merged
