"""Run directories written by the release before the one-seam refactor (commit bda5441) still resume: every
command that writes one reruns its release command line in a copy of tests/fixtures/release_bda5441 (how they
were made: its README) and must find its run, not refuse it as "a run with different settings", and come to
the same results. The recorded shapes that changed are read back by the config classes' `upgrade`
(CLConfig: alpha -> kd_weight, faithful -> the preset's fields; DecodeConfig and TableConfig: VHR's options)."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from headwise.runs import same_settings

FIXTURE = Path(__file__).parent / "fixtures" / "release_bda5441"
COMMANDS = json.loads((FIXTURE / "commands.json").read_text())
# Results that a resume recomputes or times again, and records of settings (compared by the run's one rule);
# everything else must be what the release wrote.
VOLATILE = ("seconds", "time", "env", "config", "preset", "decode", "markdown", "plot", "run_dir", "results", "wall", "command")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    copy = tmp_path_factory.mktemp("release") / "release"
    shutil.copytree(FIXTURE, copy)
    return copy


def stable(value):
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if not any(word in k for word in VOLATILE)}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def out_dir(argv: list[str]) -> str:
    return argv[argv.index("--out") + 1]


@pytest.mark.parametrize("entry", COMMANDS, ids=[c["name"] for c in COMMANDS])
def test_a_run_directory_of_the_release_resumes(entry, release, monkeypatch, capsys):
    from headwise.cli import main

    if entry["name"] == "testbed-train":
        from headwise.assets.registry import is_present

        if not is_present("smollm2"):
            pytest.skip("testbed train builds emoji-llava from the smollm2 asset")
    run = release / out_dir(entry["argv"])
    config = (run / "config.yaml").read_text()
    before = json.loads((run / "results.json").read_text())
    monkeypatch.chdir(release)
    monkeypatch.setattr(sys, "argv", ["headwise", *entry["argv"]])
    try:
        main()
    except SystemExit as exit_:
        assert exit_.code in (0, None), capsys.readouterr().err
    err = capsys.readouterr().err
    assert "different settings" not in err and "Traceback" not in err
    assert (run / "config.yaml").read_text() == config  # the release's record is kept as it was
    after = json.loads((run / "results.json").read_text())
    if entry["name"] != "testbed-train":  # its checkpoints were left out of the fixture: it trains again
        # What the release computed is kept; a newer release may add keys (as `batch`, the batch arithmetic).
        assert stable({k: after[k] for k in before if k in after}) == stable(before) and set(before) <= set(after)
    assert yaml.safe_load(config)["command"] == " ".join(entry["argv"][:2])


RESULTS = Path(__file__).parents[1] / "benchmarks" / "results"


def subrun_settings(table, seed: int, method: str, task: str):
    """The settings `testbed evaluate` gives a sub-run now (testbed.evaluate.evaluate)."""
    if task == "chair":
        return {"model": table.model, "n": table.n, "decode": table.decode(method, seed, table.max_new_tokens)}
    return {"model": table.model, "decode": table.decode(method, seed, 8)}


@pytest.mark.parametrize("archive, tables", [
    ("vhr_ablation/subruns.tar.gz", None),  # each folder holds its table's config.yaml
    ("vhr_ft/subruns.tar.gz", None),
    # the 200-scene table of the README (`testbed evaluate --n 200 --seeds 0,1,2 --batch-size 24`)
    ("testbed_subruns.tar.gz", {".": {"n": 200, "seeds": [0, 1, 2], "batch_size": 24}}),
])
def test_the_committed_testbed_tables_are_found_computed(archive, tables, tmp_path):
    """Every sub-run committed in benchmarks/results is the run today's `testbed evaluate` asks for, so rerunning the
    documented command on the unpacked archive finds it computed instead of refusing it (or computing it again)."""
    import tarfile

    from headwise.testbed.evaluate import TableConfig

    with tarfile.open(RESULTS / archive) as tar:
        tar.extractall(tmp_path, filter="data")
    if tables is None:
        tables = {str(p.parent.relative_to(tmp_path)): yaml.safe_load(p.read_text())["config"]
                  for p in tmp_path.glob("*/config.yaml")}
    checked = 0
    for folder, record in tables.items():
        table = TableConfig.from_dict(record)
        for sub in (tmp_path / folder).glob("seed*-*-*"):
            seed, method, task = sub.name.split("-", 2)
            saved = yaml.safe_load((sub / "config.yaml").read_text())
            assert saved["command"] == ("eval chair" if task == "chair" else "eval pope")
            assert same_settings(saved["config"], subrun_settings(table, int(seed[4:]), method, task)), sub
            checked += 1
    assert checked >= 3


def test_the_committed_seekr_table_cells_are_found_finished():
    """`cl table` reads each committed cell's results.json by the run's one rule: the table recorded by 0.1.0
    (alpha, faithful) is still 18 finished cells, so the documented command rebuilds it without training."""
    from dataclasses import replace

    from headwise.cl.config import BenchmarkConfig, CLConfig
    from headwise.cl.table import finished, parse_variants

    record = yaml.safe_load((RESULTS / "seekr_claim" / "config.yaml").read_text())["config"]
    base = CLConfig.from_dict(record["base"])
    bench = BenchmarkConfig.from_dict({k: record[k] for k in BenchmarkConfig.field_names()})
    settings = {"model": record["model"], "dtype": record["dtype"]}
    cells = 0
    for v in parse_variants(",".join(record["variants"])):
        for seed in record["seeds"]:
            cfg = replace(base, method=v.method, replay=v.ratio, seed=seed, lam=base.lam if v.lam is None else v.lam)
            assert finished(RESULTS / "seekr_claim" / f"{v.folder}-seed{seed}", settings, bench, cfg) is not None, v
            cells += 1
    assert cells == 18


def test_cl_report_reads_the_packed_losses_of_committed_runs():
    """The raw per-step logs are packed (benchmarks/results_manifest.py); `cl report` reads them from the archive,
    as the numbers docs/results.md quotes (the pilot's replay CE 0.574, KD 0.436, attention 0.0853)."""
    from headwise.cl.run import report

    pilot = report(RESULTS / "seekr_pilot")
    language = pilot["losses"]["language"]
    assert not (RESULTS / "seekr_pilot" / "losses.jsonl").exists()
    assert (round(language["ce"], 3), round(language["kd"], 3), round(language["attn"], 4)) == (0.574, 0.436, 0.0853)
    cell = report(RESULTS / "seekr_claim" / "seekr@0.01-seed0")
    assert round(cell["losses"]["language"]["attn_weighted"]) == 248
