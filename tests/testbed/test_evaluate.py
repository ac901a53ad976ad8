import json

import pytest

from headwise.testbed.evaluate import TableConfig, evaluate, markdown, open_run
from headwise.vhr import VHRConfig
from headwise.testing_vlm import tiny_vlm


def test_table_over_seeds_and_methods_resumes(tmp_path, monkeypatch):
    from headwise.eval import vlm
    from headwise.testbed import evaluate as ev

    model, proc = tiny_vlm("llava")
    cfg = TableConfig(model="tiny", n=3, seeds=[0, 1], methods=["greedy", "vhr"], splits=["random"], max_new_tokens=4)
    worked = []  # (cell, item keys) for every batch a model actually ran on
    real_run_items = vlm.run_items

    def recording(run, name, items, key, work, **kw):
        def spy(batch):
            worked.append((run.dir.name, [it[key] for it in batch]))
            return work(batch)
        return real_run_items(run, name, items, key, spy, **kw)

    monkeypatch.setattr(vlm, "run_items", recording)
    real_pope = ev.run_pope

    def stop_at_seed1_pope(decoder, pope, run):
        if run.dir.name == "seed1-greedy-pope-random":
            raise KeyboardInterrupt
        return real_pope(decoder, pope, run)

    monkeypatch.setattr(ev, "run_pope", stop_at_seed1_pope)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, proc, cfg, open_run(tmp_path, cfg))
    done = {cell for cell, _ in worked}
    assert done == {"seed0-greedy-chair", "seed0-greedy-pope-random", "seed0-vhr-chair", "seed0-vhr-pope-random",
                    "seed1-greedy-chair"}
    monkeypatch.setattr(ev, "run_pope", real_pope)
    worked.clear()
    result = evaluate(model, proc, cfg, open_run(tmp_path, cfg))  # resumes: the finished cells are read, not recomputed
    assert {cell for cell, _ in worked} == {"seed1-greedy-pope-random", "seed1-vhr-chair", "seed1-vhr-pope-random"}

    # Each table entry is the mean and population std over the seeds of the cells' own results.
    for method in cfg.methods:
        cells = [json.loads((tmp_path / f"seed{s}-{method}-chair" / "results.json").read_text())["metrics"]
                 for s in cfg.seeds]
        popes = [json.loads((tmp_path / f"seed{s}-{method}-pope-random" / "results.json").read_text())["metrics"]
                 for s in cfg.seeds]
        row = result["table"][method]
        for key, values in (("chair_i", [c["chair_i"] for c in cells]), ("len", [c["len"] for c in cells]),
                            ("pope_random_f1", [p["f1"] for p in popes])):
            mean = (values[0] + values[1]) / 2
            assert row[key]["values"] == values
            assert row[key]["mean"] == pytest.approx(mean) and row[key]["std"] == pytest.approx(abs(values[0] - mean))
        assert [p["n"] for p in popes] == [len((tmp_path / f"scenes-seed{s}" / "pope_random.jsonl").read_text()
                                                .splitlines()) for s in cfg.seeds]
    table = (tmp_path / "table.md").read_text().splitlines()
    assert table[0].startswith("| method | CHAIR_S | CHAIR_I | recall | words | POPE random F1 | POPE random acc. "
                               "| POPE unparsed |")
    assert table[2].startswith("| greedy |") and all(line.count("|") == table[0].count("|") for line in table)
    chair_i = result["table"]["greedy"]["chair_i"]
    assert f"| {100 * chair_i['mean']:.1f} ± {100 * chair_i['std']:.1f} |" in table[2]
    # the same scenes for every method of a seed
    ids = [json.loads((tmp_path / f"seed0-{m}-chair" / "image_ids.json").read_text()) for m in cfg.methods]
    assert ids[0] == ids[1]
    worked.clear()
    again = evaluate(model, proc, cfg, open_run(tmp_path, cfg))  # everything is already computed: nothing runs, same numbers
    assert worked == [] and again["table"] == result["table"]


def test_markdown_names_vhr_settings_and_shows_no_spread_for_one_seed():
    one = {"mean": 0.5, "std": 0.0, "values": [0.5]}
    row = {k: one for k in ("chair_s", "chair_i", "recall", "len", "seconds_per_caption", "pope_random_f1",
                            "pope_random_accuracy")}
    cfg = TableConfig(seeds=[0], methods=["greedy", "vhr"], splits=["random"],
                      vhr=VHRConfig(layers=[1, 17, 18, 19, 25]))
    lines = markdown({"greedy": row, "vhr": row}, cfg).splitlines()
    assert lines[3].startswith("| vhr (alpha 2, layers 1, 17-19, 25) | 50.0 | 50.0 |") and "±" not in lines[3]
    cfg = TableConfig(seeds=[0, 1], methods=["vhr"], splits=["random"])
    assert markdown({"vhr": row}, cfg).splitlines()[2].startswith("| vhr (alpha 2, default layers) | 50.0 ± 0.0 |")


def test_markdown_without_pope_splits_has_chair_columns_only():
    # `--splits none` (CHAIR alone, as the ablation study runs) once divided by zero in the unparsed column
    one = {"mean": 0.5, "std": 0.0, "values": [0.5]}
    row = {k: one for k in ("chair_s", "chair_i", "recall", "len", "seconds_per_caption")}
    lines = markdown({"greedy": row}, TableConfig(seeds=[0], methods=["greedy"], splits=[])).splitlines()
    assert lines[0] == "| method | CHAIR_S | CHAIR_I | recall | words | s / caption |"
    assert lines[2] == "| greedy | 50.0 | 50.0 | 50.0 | 0.5 | 0.50 |"
