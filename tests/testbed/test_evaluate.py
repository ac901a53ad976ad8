import json

from headwise.testbed.evaluate import TableConfig, evaluate, markdown
from headwise.testing_vlm import tiny_vlm


def test_table_over_seeds_and_methods_resumes(tmp_path):
    model, proc = tiny_vlm("llava")
    cfg = TableConfig(model="tiny", n=3, seeds=[0, 1], methods=["greedy", "vhr"], splits=["random"], max_new_tokens=4)
    result = evaluate(tmp_path, cfg, model, proc)
    row = result["table"]["vhr"]
    assert len(row["chair_i"]["values"]) == 2 and 0 <= row["chair_i"]["mean"] <= 1
    table = (tmp_path / "table.md").read_text().splitlines()
    assert table[0].startswith("| method | CHAIR_S | CHAIR_I | recall | words | POPE random F1 | POPE random acc. "
                               "| POPE unparsed |")
    assert table[2].startswith("| greedy |") and all(line.count("|") == table[0].count("|") for line in table)
    # the same scenes for every method of a seed
    ids = [json.loads((tmp_path / f"seed0-{m}-chair" / "image_ids.json").read_text()) for m in cfg.methods]
    assert ids[0] == ids[1]
    again = evaluate(tmp_path, cfg, model, proc)  # everything is already computed: same numbers
    assert again["table"] == result["table"]


def test_markdown_names_vhr_settings_and_shows_no_spread_for_one_seed():
    one = {"mean": 0.5, "std": 0.0, "values": [0.5]}
    row = {k: one for k in ("chair_s", "chair_i", "recall", "len", "seconds_per_caption", "pope_random_f1",
                            "pope_random_accuracy")}
    cfg = TableConfig(seeds=[0], methods=["greedy", "vhr"], splits=["random"], layers=[1, 17, 18, 19, 25])
    lines = markdown({"greedy": row, "vhr": row}, cfg).splitlines()
    assert lines[3].startswith("| vhr (alpha 2, layers 1, 17-19, 25) | 50.0 | 50.0 |") and "±" not in lines[3]
    cfg = TableConfig(seeds=[0, 1], methods=["vhr"], splits=["random"])
    assert markdown({"vhr": row}, cfg).splitlines()[2].startswith("| vhr (alpha 2, default layers) | 50.0 ± 0.0 |")
