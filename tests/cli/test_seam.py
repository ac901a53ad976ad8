"""One seam for every method, seen from the command line: --preset on every command with presets (refused in one
sentence when unknown or when it cannot apply), --faithful as its alias, --alpha meaning VHR's scale alone (cl's
old --alpha a deprecated alias of --kd-weight), --model/--dtype/--device on every command that loads a model."""

import json

import pytest

from headwise.errors import HeadwiseError

from cli_helpers import headwise


@pytest.mark.parametrize("args, message", [
    (["cl", "run", "--model", "nowhere", "--preset", "paperish", "--out", "o"], "unknown preset 'paperish'"),
    (["cl", "run", "--model", "nowhere", "--faithful", "--preset", "other", "--out", "o"],
     "--faithful is --preset faithful; it cannot go with --preset other"),
    (["cl", "table", "--model", "nowhere", "--preset", "x", "--out", "o"], "unknown preset 'x'; choose one of faithful"),
    (["compress", "fit", "--model", "nowhere", "--preset", "x", "--out", "o"], "choose one of faithful"),
    (["vhr", "describe", "--model", "nowhere", "--image", "x.png", "--preset", "x"],
     "choose one of paper, no-outlier-rule, image-only"),
    (["eval", "chair", "--model", "nowhere", "--images", ".", "--annotations", ".", "--method", "greedy",
      "--preset", "no-outlier-rule"], "it does nothing for --method greedy"),
    (["testbed", "evaluate", "--methods", "greedy,vcd", "--preset", "paper", "--out", "o"],
     "it does nothing for --method greedy,vcd"),
])
def test_bad_presets_are_one_sentence_and_exit_2_before_any_work(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = headwise(monkeypatch, capsys, *args)
    assert code == 2 and message in err and "Traceback" not in out + err, err
    assert not (tmp_path / "o").exists()


def test_cl_alpha_is_a_deprecated_alias_of_kd_weight(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = headwise(monkeypatch, capsys, "cl", "run", "--model", "./nowhere", "--alpha", "0.3", "--out", "o")
    assert "--alpha is deprecated in `headwise cl`; it is --kd-weight now" in err
    assert code == 2 and "does not exist" in err  # it went on to load the model
    code, _, err = headwise(monkeypatch, capsys, "cl", "run", "--model", "./nowhere", "--alpha", "0.3",
                            "--kd-weight", "0.4", "--out", "o")
    assert code == 2 and "give only --kd-weight" in err


def test_the_cl_options_reach_the_config_with_preset_then_explicit(monkeypatch):
    """--preset faithful sets the original's fields, an explicit option wins over it, the old --alpha lands in
    kd_weight; read off the parsed config that `cl run` hands to its recipe."""
    import headwise.cl.run as cl_run

    seen = {}

    def capture(model, bench, cfg, out, *args, **kwargs):
        seen.update(bench=bench, cfg=cfg, preset=kwargs.get("preset"))
        raise HeadwiseError("stop")
    monkeypatch.setattr(cl_run, "cl_run", capture)
    from typer.testing import CliRunner

    from headwise.cli import app

    result = CliRunner().invoke(app, ["cl", "run", "--model", "m", "--preset", "faithful", "--query-budget", "8",
                                      "--alpha", "0.3", "--tasks", "2", "--out", "o"])
    assert isinstance(result.exception, HeadwiseError), result.output
    cfg = seen["cfg"]
    assert seen["preset"] == "faithful" and seen["bench"].tasks == 2
    assert cfg.query_budget == 8 and cfg.logit_topk == 0 and cfg.kd_positions == "own-label" and cfg.kd_weight == 0.3
    # --faithful keeps its 0.1.0 meaning: the original's values win over --query-budget (and it says so)
    result = CliRunner().invoke(app, ["cl", "run", "--model", "m", "--faithful", "--query-budget", "8", "--out", "o"])
    assert seen["preset"] == "faithful" and seen["cfg"].query_budget == 0 and seen["cfg"].kd_weight == 0.5
    assert "note: --faithful sets --query-budget to the original code's" in result.output


@pytest.mark.parametrize("command", [["heads", "show"], ["heads", "scan"], ["vhr", "describe"], ["vhr", "heads"],
                                     ["vhr", "analyze"], ["eval", "chair"], ["eval", "pope"], ["testbed", "evaluate"],
                                     ["cl", "run"], ["cl", "table"], ["compress", "fit"], ["compress", "serve"]])
def test_every_command_that_loads_a_model_takes_model_dtype_and_device(command):
    from typer.testing import CliRunner

    from headwise.cli import app

    out = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"}).output
    for option in ("--model", "--dtype", "--device", "--trust-remote-code", "--json"):
        assert option in out, f"{' '.join(command)} lacks {option}"


def test_alpha_means_vhr_scale_wherever_it_appears():
    from typer.testing import CliRunner

    from headwise.cli import app

    for command in (["vhr", "describe"], ["eval", "chair"], ["eval", "pope"], ["testbed", "evaluate"]):
        out = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"}).output
        assert "VHR: scale of the chosen heads" in out, command
    out = CliRunner().invoke(app, ["cl", "run", "--help"], env={"COLUMNS": "250"}).output
    assert "Deprecated: the old name of --kd-weight" in out


def test_compress_fit_preset_faithful_reaches_the_stratnet_and_serving(tmp_path):
    """The `faithful` preset (locuslab/wanda's int() count per row) is recorded in the run and the StratNet, and
    the served pruner counts as the fit's did."""
    from headwise.compress.config import CalibConfig, FitConfig
    from headwise.compress.objectives import Evaluator
    from headwise.compress.run import open_fit_run, run_fit
    from headwise.compress.serve import Server
    from headwise.testing import ByteTokenizer, tiny_model

    text = tmp_path / "t.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 40)
    calib = CalibConfig.resolve("faithful", {"data": str(text), "seq_len": 16, "windows": 2, "ppl_windows": 1})
    fit = FitConfig(evals=4, initial=2, batch=1, steps=2)
    model, tok = tiny_model("llama"), ByteTokenizer()
    run = open_fit_run(tmp_path / "fit", "tiny", "auto", calib, fit, preset="faithful")
    run_fit(model, tok, "tiny", calib, fit, run, progress=False)
    assert json.loads((tmp_path / "fit" / "results.json").read_text())["preset"] == "faithful"
    server = Server(tmp_path / "fit")
    assert server.calib_config.rounding == "floor"
    from headwise.compress.fit import calibration

    ev = Evaluator.for_config(model, calibration(model, tok, server.calib_config, run), "unstructured",
                              server.calib_config)
    assert ev.pruner.rounding == "floor"


def test_compress_fit_preset_from_the_command_line(monkeypatch):
    """`compress fit --preset faithful` resolves CalibConfig through the preset; explicit options still win."""
    import headwise.cli.compress as compress_cli
    import headwise.compress.run as compress_run

    seen = {}

    def capture(out, model_name, dtype, calib, fit, preset=None):
        seen.update(calib=calib, preset=preset)
        raise HeadwiseError("stop")
    monkeypatch.setattr(compress_run, "open_fit_run", capture)
    monkeypatch.setattr(compress_cli, "load", lambda *a, **k: (None, None))  # no model needed to see the config
    from typer.testing import CliRunner

    from headwise.cli import app

    result = CliRunner().invoke(app, ["compress", "fit", "--model", "m", "--preset", "faithful", "--windows", "2",
                                      "--out", "o"])
    assert isinstance(result.exception, HeadwiseError), result.output
    assert seen["preset"] == "faithful" and seen["calib"].rounding == "floor" and seen["calib"].windows == 2
