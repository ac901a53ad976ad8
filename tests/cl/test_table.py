import json

import pytest

from headwise.cl.config import CLConfig
from headwise.cl.table import parse_variants, table
from headwise.errors import HeadwiseError

from test_data_cli import cli


def test_parse_variants():
    got = parse_variants("seqft, replay@0.01,seekr@0.1,seekr@0.01:lam=1.5")
    assert got == [("seqft", 0.01, None), ("replay", 0.01, None), ("seekr", 0.1, None), ("seekr", 0.01, 1.5)]
    assert [v.label for v in got] == ["seqft", "replay@0.01", "seekr@0.1", "seekr@0.01:lam=1.5"]
    for bad, msg in (("nope@0.1", "unknown method"), ("replay", "needs a replay ratio"),
                     ("seekr@x", "not a number"), (" , ", "no methods"), ("replay@0.1:lam=2", "only seekr"),
                     ("seekr@0.1:lam=x", "lambda .* is not a number"), ("seekr@0.1:alpha=1", "only seekr")):
        with pytest.raises(HeadwiseError, match=msg):
            parse_variants(bad)


def fake_run(calls):
    """A stand-in for `cl run`: OP grows with the seed, BWT depends on the method."""
    def run_one(run_dir, cfg):
        calls.append((run_dir.name, cfg.method, cfg.replay, cfg.seed))
        bwt = {"seqft": -0.4, "seekr": -0.1}[cfg.method]
        return {"op": 0.5 + 0.1 * cfg.seed, "bwt": bwt, "bwt_paper": bwt * 0.8, "fwt": 0.0,
                "timing": {"a": {"seconds": 2.0}, "b": {"seconds": 3.0}}}
    return run_one


def test_table_means_and_stds_over_seeds(tmp_path):
    calls = []
    res = table(tmp_path / "t", [("seqft", 0.01), ("seekr", 0.05)], [0, 2], CLConfig(lr=1e-3), fake_run(calls),
                log=lambda s: None)
    # Seed by seed: a table computed in parts has whole seeds first.
    assert [c[0] for c in calls] == ["seqft-seed0", "seekr@0.05-seed0", "seqft-seed2", "seekr@0.05-seed2"]
    assert calls[1][1:] == ("seekr", 0.05, 0)
    row = res["table"]["seekr@0.05"]
    assert row["op"]["mean"] == pytest.approx(0.6) and row["op"]["std"] == pytest.approx(0.1)
    assert row["bwt"]["values"] == [-0.1, -0.1] and row["train_seconds"]["mean"] == 5.0
    md = (tmp_path / "t" / "table.md").read_text()
    assert "| seqft | 60.0 ± 10.0 | -40.0 ± 0.0 | -32.0 ± 0.0 | 0.0 ± 0.0 | 5 |" in md
    assert (tmp_path / "t" / "table.png").is_file()
    saved = json.loads((tmp_path / "t" / "results.json").read_text())
    assert saved["config"]["variants"] == ["seqft", "seekr@0.05"] and saved["config"]["base"]["lr"] == 1e-3
    # Other settings in the same directory are refused rather than mixed.
    with pytest.raises(HeadwiseError, match="different settings"):
        table(tmp_path / "t", [("seqft", 0.01)], [0], CLConfig(lr=1e-3), fake_run([]), log=lambda s: None)


def test_table_refuses_bad_cells_before_running_any(tmp_path):
    calls = []
    with pytest.raises(HeadwiseError, match="replay must be"):
        table(tmp_path / "t", [("seqft", 0.01), ("replay", 2.5)], [0], CLConfig(), fake_run(calls))
    assert calls == [] and not (tmp_path / "t").exists()


def test_cli_table_bad_methods_exit_2(tmp_path):
    p = cli("table", "--model", "smollm2", "--methods", "replay", "--out", str(tmp_path / "t"))
    assert p.returncode == 2 and "needs a replay ratio" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "t").exists()


def test_table_with_worker_processes_equals_one_process(tmp_path):
    from table_cells import fake_cell

    variants, seeds = [("seqft", 0.01), ("seekr", 0.05)], [0, 1, 2]
    one = table(tmp_path / "one", variants, seeds, CLConfig(), fake_cell, log=lambda s: None)
    two = table(tmp_path / "two", variants, seeds, CLConfig(), fake_cell, log=lambda s: None, jobs=2)
    for name in one["table"]:
        for key in ("op", "bwt", "bwt_paper", "fwt"):
            assert one["table"][name][key] == two["table"][name][key]
    # Each worker got its share of the threads.
    import os

    cores = len(os.sched_getaffinity(0))
    assert two["table"]["seqft"]["train_seconds"]["mean"] == max(1, cores // 2)
    with pytest.raises(HeadwiseError, match="--jobs must be at least 1"):
        table(tmp_path / "three", variants, seeds, CLConfig(), fake_cell, jobs=0)


def test_cli_table_refuses_a_replay_cycle_longer_than_a_task_before_any_directory(tmp_path):
    from cl_helpers import write_trace

    bench = write_trace(tmp_path / "b")  # 8 training items per task: 4 batches of 2
    p = cli("table", "--model", "smollm2", "--benchmark", f"trace:{bench}", "--methods", "seekr@0.25",
            "--replay-cycle", "5", "--out", str(tmp_path / "t"))
    assert p.returncode == 2 and "more than the 4 task batches of task b" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "t").exists()


def test_cli_table_missing_model_exit_2_before_any_directory(tmp_path):
    p = cli("table", "--model", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "t"))
    assert p.returncode == 2 and "does not exist" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "t").exists()


def test_an_interrupted_table_skips_the_finished_cells(tmp_path):
    """Killed after two cells, the table reruns only the others; a finished cell counts from its results.json
    alone (as committed without checkpoints), and only when its settings are the table's."""
    from headwise.runs import Run

    settings = {"model": "m", "benchmark": "wiki", "order": "1", "tasks": 2, "wiki_train": 8, "wiki_test": 2,
                "dtype": "auto"}
    calls = []

    def run_one(run_dir, cfg):
        if len(calls) == 2 and stop:
            raise KeyboardInterrupt
        calls.append(run_dir.name)
        res = {"op": 0.5 + 0.1 * cfg.seed, "bwt": -0.1, "bwt_paper": -0.08, "fwt": 0.0, "complete": True,
               "timing": {"a": {"seconds": 1.0}}}
        Run(run_dir, "cl run", {**settings, **cfg.to_dict()}).finish(res)
        return res

    variants, seeds = [("seqft", 0.01), ("seekr", 0.05)], [0, 1]
    stop = True
    with pytest.raises(KeyboardInterrupt):
        table(tmp_path / "t", variants, seeds, CLConfig(), run_one, settings, log=lambda s: None)
    assert calls == ["seqft-seed0", "seekr@0.05-seed0"]
    # Keep only results.json of one finished cell, as a commit of results would.
    import shutil

    (tmp_path / "t" / "seekr@0.05-seed0" / "config.yaml").unlink()
    stop, calls[:] = False, []
    res = table(tmp_path / "t", variants, seeds, CLConfig(), run_one, settings, log=lambda s: None)
    assert calls == ["seqft-seed1", "seekr@0.05-seed1"]
    assert res["table"]["seqft"]["op"]["values"] == [0.5, 0.6]
    # A cell whose results were made with other settings, or never finished, is run again.
    done = json.loads((tmp_path / "t" / "seqft-seed0" / "results.json").read_text())
    (tmp_path / "t" / "seqft-seed0" / "results.json").write_text(json.dumps({**done, "complete": False}))
    shutil.rmtree(tmp_path / "t" / "seqft-seed1")
    (tmp_path / "t" / "seqft-seed1").mkdir()
    (tmp_path / "t" / "seqft-seed1" / "results.json").write_text(
        json.dumps({**done, "config": {**done["config"], "lr": 1.0}}))
    calls[:] = []
    table(tmp_path / "t", variants, seeds, CLConfig(), run_one, settings, log=lambda s: None)
    assert calls == ["seqft-seed0", "seqft-seed1"]


def test_paired_differences_per_seed_and_the_claim_line(tmp_path):
    def run_one(run_dir, cfg):
        op = {("replay", 0.01): [0.40, 0.50], ("replay", 0.1): [0.45, 0.58], ("seekr", 0.01): [0.44, 0.57]}
        bwt = {("replay", 0.01): [-0.2, -0.1], ("replay", 0.1): [-0.05, 0.0], ("seekr", 0.01): [-0.1, -0.1]}
        key = (cfg.method, cfg.replay)
        return {"op": op[key][cfg.seed], "bwt": bwt[key][cfg.seed], "bwt_paper": 0.0, "fwt": 0.0, "timing": {}}

    res = table(tmp_path / "t", [("replay", 0.01), ("replay", 0.1), ("seekr", 0.01)], [0, 1], CLConfig(), run_one,
                log=lambda s: None)
    d = res["paired"]["seekr@0.01 - replay@0.1"]
    # By hand: OP differences -0.01 and -0.01; BWT -0.05 and -0.1.
    assert d["op"]["values"] == pytest.approx([-0.01, -0.01]) and d["op"]["std"] == pytest.approx(0.0)
    assert d["bwt"]["mean"] == pytest.approx(-0.075) and d["bwt"]["std"] == pytest.approx(0.025)
    assert res["paired"]["seekr@0.01 - replay@0.01"]["op"]["mean"] == pytest.approx(0.055)
    md = (tmp_path / "t" / "table.md").read_text()
    assert "| seekr@0.01 - replay@0.1 | -1.0 ± 0.0 | -7.5 ± 2.5 |" in md
    assert "seekr@0.01 - replay@0.1 at least -1 point of OP): holds (-1.0 points)" in md
    saved = json.loads((tmp_path / "t" / "results.json").read_text())
    assert saved["paired"]["seekr@0.01 - replay@0.01"]["op"]["values"] == pytest.approx([0.04, 0.07])


def test_a_seekr_row_with_its_own_lambda(tmp_path):
    seen = {}

    def run_one(run_dir, cfg):
        seen[run_dir.name] = cfg.lam
        return {"op": 0.5, "bwt": 0.0, "bwt_paper": 0.0, "fwt": 0.0, "timing": {}}

    res = table(tmp_path / "t", parse_variants("replay@0.1,seekr@0.01,seekr@0.01:lam=1.5"), [0], CLConfig(), run_one,
                log=lambda s: None)
    assert seen == {"replay@0.1-seed0": 1000.0, "seekr@0.01-seed0": 1000.0, "seekr@0.01-lam1.5-seed0": 1.5}
    assert set(res["paired"]) == {"seekr@0.01 - replay@0.1", "seekr@0.01:lam=1.5 - replay@0.1"}
    assert "| seekr@0.01:lam=1.5 |" in (tmp_path / "t" / "table.md").read_text()
