import json

from headwise.testbed.evaluate import TableConfig, evaluate
from headwise.testing_vlm import tiny_vlm


def test_table_over_seeds_and_methods_resumes(tmp_path):
    model, proc = tiny_vlm("llava")
    cfg = TableConfig(model="tiny", n=3, seeds=[0, 1], methods=["greedy", "vhr"], splits=["random"], max_new_tokens=4)
    result = evaluate(tmp_path, cfg, model, proc)
    row = result["table"]["vhr"]
    assert len(row["chair_i"]["values"]) == 2 and 0 <= row["chair_i"]["mean"] <= 1
    table = (tmp_path / "table.md").read_text().splitlines()
    assert table[0].startswith("| method | CHAIR_S | CHAIR_I | recall | words | POPE random F1 | POPE random acc.")
    assert table[2].startswith("| greedy |") and all(line.count("|") == table[0].count("|") for line in table)
    # the same scenes for every method of a seed
    ids = [json.loads((tmp_path / f"seed0-{m}-chair" / "image_ids.json").read_text()) for m in cfg.methods]
    assert ids[0] == ids[1]
    again = evaluate(tmp_path, cfg, model, proc)  # everything is already computed: same numbers
    assert again["table"] == result["table"]
