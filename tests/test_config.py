"""The one config-and-preset mechanism (headwise.config) and the run directory's one identity rule
(headwise.runs.same_settings), on small settings classes of their own and on the real ones."""

from dataclasses import dataclass

import pytest
import yaml

from headwise.config import Settings, apply_preset, check_preset
from headwise.errors import HeadwiseError
from headwise.runs import JsonlLog, Run, read_jsonl, same_settings


@dataclass
class Toy(Settings):
    rate: float = 0.1
    steps: int = 3
    pair: tuple[int, int] = (1, 2)

    PRESETS = {"fast": {"rate": 0.5, "steps": 1}}

    def validate(self):
        if self.steps < 1:
            raise HeadwiseError(f"steps must be at least 1, got {self.steps}.")

    @classmethod
    def upgrade(cls, record):
        record = dict(record)
        if "lr" in record:
            record["rate"] = record.pop("lr")
        return record


def test_preset_then_explicit_options_then_validation():
    assert Toy.resolve("fast") == Toy(rate=0.5, steps=1)
    assert Toy.resolve("fast", {"steps": 7}) == Toy(rate=0.5, steps=7)  # explicit wins over the preset
    assert Toy.resolve("fast", {}, {"steps": 9, "rate": 0.2}) == Toy(rate=0.5, steps=1)  # the preset wins over base
    assert Toy.resolve(None, {}, {"steps": 9}) == Toy(steps=9)
    with pytest.raises(HeadwiseError, match="unknown preset 'slow' for Toy; presets: fast"):
        Toy.resolve("slow")
    with pytest.raises(HeadwiseError, match="steps must be at least 1"):
        Toy.resolve("fast", {"steps": 0})
    with pytest.raises(HeadwiseError, match="unknown Toy settings"):
        Toy.resolve(None, {"speed": 1})


def test_a_command_preset_applies_to_the_classes_that_have_it():
    @dataclass
    class Other(Settings):
        rate: float = 0.1

    assert check_preset("fast", Toy, Other) == "fast"
    assert apply_preset(Other, "fast", {}, {"rate": 0.3}) == Other(rate=0.3)  # Other has no `fast`: untouched
    with pytest.raises(HeadwiseError, match="unknown preset 'nope'; choose one of fast"):
        check_preset("nope", Toy, Other)


def test_records_round_trip_and_fill_what_older_ones_lack():
    toy = Toy(rate=0.3, pair=(4, 5))
    assert toy.to_dict() == {"rate": 0.3, "steps": 3, "pair": [4, 5]}
    assert Toy.from_dict(toy.to_dict()) == toy  # lists back to tuples
    assert Toy.from_dict({"rate": 0.3, "pair": [4, 5]}) == toy  # a field the record lacks: its default
    assert Toy.from_dict({"lr": 0.3, "pair": [4, 5]}) == toy  # an older name, read by upgrade()
    with pytest.raises(HeadwiseError, match="unknown Toy settings"):
        Toy.from_dict({"speed": 1})


def test_one_identity_rule_for_run_directories(tmp_path):
    new = Toy(rate=0.3)
    # flat parts, nested settings, plain keys, and a plain key added later with a default
    assert same_settings({"model": "m", "rate": 0.3}, {"model": "m"}, new)
    assert same_settings({"model": "m", "lr": 0.3, "steps": 3}, {"model": "m"}, new)
    assert not same_settings({"model": "m", "rate": 0.4}, {"model": "m"}, new)
    assert not same_settings({"model": "m", "rate": 0.3, "extra": 1}, {"model": "m"}, new)
    assert same_settings({"fit": {"steps": 3}}, {"fit": Toy()})
    assert not same_settings({"fit": {"steps": 4}}, {"fit": Toy()})
    assert same_settings({"model": "m"}, {"model": "m", "dtype": "auto"}, defaults={"dtype": "auto"})
    assert not same_settings({"model": "m"}, {"model": "m", "dtype": "bfloat16"}, defaults={"dtype": "auto"})
    assert not same_settings({"model": "m"}, {"model": "m", "dtype": "auto"})  # no default: a new key differs

    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"command": "toy", "config": {"model": "m", "lr": 0.3}}))
    run = Run(tmp_path, "toy", {"model": "m"}, new, preset="fast")
    assert run.resumed and run.config == {"model": "m", "rate": 0.3, "steps": 3, "pair": [1, 2]}
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["config"] == {"model": "m", "lr": 0.3}
    with pytest.raises(HeadwiseError, match="different settings"):
        Run(tmp_path, "toy", {"model": "m"}, Toy(rate=0.5))
    fresh = Run(tmp_path / "fresh", "toy", {"model": "m"}, new, preset="fast")
    assert yaml.safe_load((tmp_path / "fresh" / "config.yaml").read_text())["preset"] == "fast"
    fresh.finish({"x": 1})
    assert fresh.read_json("results.json")["preset"] == "fast"


def test_jsonl_log_drops_a_line_cut_short_by_a_kill(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "val')
    log = JsonlLog(path)
    assert log.rows == [{"id": 1}, {"id": 2}]
    log.append({"id": 3})
    assert read_jsonl(path) == [{"id": 1}, {"id": 2}, {"id": 3}]
    kept = JsonlLog(path, keep=lambda r: r["id"] < 3)
    assert kept.rows == [{"id": 1}, {"id": 2}] and read_jsonl(path) == kept.rows


def test_the_real_configs_validate_and_upgrade_what_the_release_recorded():
    from headwise.cl.config import CLConfig
    from headwise.compress.config import CalibConfig
    from headwise.testbed.evaluate import TableConfig
    from headwise.vhr.config import DecodeConfig, VCDConfig, VHRConfig

    # What 0.1.0 recorded: `alpha`, `faithful`, and under --faithful the three fields it rewrote.
    new_fields = ("kd_positions", "sensitivity_entries", "short_queries", "buffer_sizes", "auto_cycle",
                  "importance_padding")
    old = {k: v for k, v in CLConfig().to_dict().items() if k not in new_fields}
    old["alpha"] = old.pop("kd_weight")
    assert CLConfig.from_dict({**old, "alpha": 0.3, "faithful": False}) == CLConfig(kd_weight=0.3)
    faithful = {**old, "faithful": True, "replay_sampling": "first", "query_budget": 0, "logit_topk": 0}
    # importance_padding came later and reads as the preset's, so the release's --faithful command resumes its run.
    assert CLConfig.from_dict(faithful) == CLConfig.resolve("faithful")
    assert CalibConfig.resolve("faithful").rounding == "floor" and CalibConfig().rounding == "nearest"
    assert VHRConfig.resolve("no-outlier-rule") == VHRConfig(outlier_rule=False)
    assert VHRConfig.resolve("paper") == VHRConfig()  # the paper's setting is the default
    with pytest.raises(HeadwiseError, match="alpha must be > 0"):
        VHRConfig(alpha=0)
    with pytest.raises(HeadwiseError, match="takes VHRConfig options"):
        DecodeConfig(method="vhr", options=VCDConfig())
    legacy = {"method": "vhr", "alpha": 3.0, "layers": [1, 2], "prompt": "p", "max_new_tokens": 8, "batch_size": 1,
              "seed": 0, "extra": {"heads": "random"}}
    assert DecodeConfig.from_dict(legacy).options == VHRConfig(alpha=3.0, layers=[1, 2], heads="random")
    table = TableConfig.from_dict({"n": 2, "alpha": 3.0, "positions": "generated"})
    assert table.vhr == VHRConfig(alpha=3.0, positions="generated")
