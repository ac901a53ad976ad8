"""`headwise compress` commands: bad input is one HeadwiseError sentence (exit 2 once wired into main)."""

import pytest
from typer.testing import CliRunner

from headwise.cli.compress import app
from headwise.compress.config import CalibConfig, FitConfig
from headwise.compress.fit import fit
from headwise.errors import HeadwiseError
from headwise.runs import Run
from headwise.testing import ByteTokenizer, tiny_model


@pytest.fixture(scope="module")
def tiny_stratnet(tmp_path_factory):
    d = tmp_path_factory.mktemp("sn")
    text = d / "t.txt"
    text.write_text("Calibration text for a tiny model, repeated. " * 40)
    cc = CalibConfig(data=str(text), seq_len=32, windows=2, ppl_windows=2)
    fc = FitConfig(evals=6, initial=4, batch=2, steps=10, gp_iters=10)
    fit(tiny_model("llama"), ByteTokenizer(), "tiny-llama", cc, fc, Run(d / "fit", "compress fit", {}), progress=False)
    return d / "fit"


def invoke(*args):
    return CliRunner().invoke(app, list(map(str, args)))


@pytest.mark.parametrize("line, message", [
    ('{"preference": [-0.5, 1.5]}', "non-negative"),
    ('{"preference": [0.5, 0.7]}', "sum to 1"),
    ('{"sparsity": 0.97}', "sparsity must lie in [0, 0.95]"),
    ('{"sparsity": -0.1}', "sparsity must lie in [0, 0.95]"),
])
def test_serve_refuses_bad_requests(tiny_stratnet, tmp_path, line, message):
    req = tmp_path / "r.jsonl"
    req.write_text(line + "\n")
    result = invoke("serve", "--stratnet", tiny_stratnet, "--requests", req, "--out", tmp_path / "o")
    assert isinstance(result.exception, HeadwiseError) and message in str(result.exception)


def test_serve_refuses_a_stratnet_of_another_model(tiny_stratnet, tmp_path, smollm2):
    req = tmp_path / "r.jsonl"
    req.write_text('{"sparsity": 0.5}\n')
    result = invoke("serve", "--stratnet", tiny_stratnet, "--requests", req, "--model", "smollm2",
                    "--out", tmp_path / "o")
    assert isinstance(result.exception, HeadwiseError) and "trained for 'tiny-llama'" in str(result.exception)


def test_fit_refuses_bad_settings(tmp_path):
    result = invoke("fit", "--model", "smollm2", "--space", "width", "--out", tmp_path / "o")
    assert isinstance(result.exception, HeadwiseError) and "unknown space" in str(result.exception)
    result = invoke("fit", "--model", "smollm2", "--evals", "2", "--out", tmp_path / "o")
    assert isinstance(result.exception, HeadwiseError)
    result = invoke("fit", "--model", "smollm2", "--spread", "1.5", "--out", tmp_path / "o")
    assert isinstance(result.exception, HeadwiseError) and "spread must be in" in str(result.exception)
    assert not (tmp_path / "o").exists()


def test_serve_without_a_stratnet(tmp_path):
    req = tmp_path / "r.jsonl"
    req.write_text('{"sparsity": 0.5}\n')
    result = invoke("serve", "--stratnet", tmp_path, "--requests", req)
    assert isinstance(result.exception, HeadwiseError) and "holds no StratNet" in str(result.exception)


def test_shipped_stratnet_by_name(tmp_path):
    """--stratnet takes the shipped StratNet's name, as --model takes aliases (issue 16)."""
    from headwise.compress.serve import Server, stratnet_dir

    assert Server("smollm2").meta["model"] == "smollm2"
    assert Server("gemma3-270m").meta["model"] == "gemma3-270m"  # issue 15: --stratnet gemma3-270m
    assert Server("gemma3-270m").meta["fingerprint"]["num_layers"] == 18
    assert stratnet_dir("smollm2") == stratnet_dir("smollm2-unstructured")
    assert (stratnet_dir("smollm2") / "stratnet.safetensors").is_file()
    # through the command line: the shipped StratNet is found, then refuses a model it was not trained for
    tiny_model("qwen2").save_pretrained(tmp_path / "tiny")
    req = tmp_path / "r.jsonl"
    req.write_text('{"sparsity": 0.5}\n')
    result = invoke("serve", "--stratnet", "smollm2", "--requests", req, "--model", tmp_path / "tiny",
                    "--out", tmp_path / "o")
    assert isinstance(result.exception, HeadwiseError) and "trained for 'smollm2'" in str(result.exception)


@pytest.mark.parametrize("spec, message", [
    ("smolm2", "no shipped StratNet is named 'smolm2'; the shipped ones are smollm2 (smollm2-unstructured), "
               "gemma3-270m (gemma3-270m-unstructured), or give a `headwise compress fit` run directory."),
    ("runs/missing-fit", "--stratnet runs/missing-fit does not exist; give a shipped StratNet's name (smollm2 "
                         "(smollm2-unstructured), gemma3-270m (gemma3-270m-unstructured)) or a `headwise compress "
                         "fit` run directory."),
])
def test_unknown_stratnet_name_lists_the_shipped_ones(spec, message, tmp_path):
    import subprocess
    import sys

    req = tmp_path / "r.jsonl"
    req.write_text('{"sparsity": 0.5}\n')
    proc = subprocess.run([sys.executable, "-m", "headwise.cli", "compress", "serve", "--stratnet", spec,
                           "--requests", str(req), "--out", str(tmp_path / "o")], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == f"error: {message}\n"


def test_serve_stopped_mid_way_keeps_the_answered_requests(tiny_stratnet, tmp_path, monkeypatch):
    import json

    from headwise.compress.fit import calibration
    from headwise.compress.serve import Server, serve
    from headwise.compress.strategy import read_requests

    reqs = tmp_path / "r.jsonl"
    reqs.write_text('{"sparsity": 0.3, "id": "a"}\n{"sparsity": 0.5, "id": "b"}\n{"preference": [0.6, 0.4], "id": "c"}\n')
    model, server = tiny_model("llama"), Server(tiny_stratnet)
    calib = calibration(model, ByteTokenizer(), server.calib_config)
    asked, real_strategy = [], Server.strategy

    def stop_at_b(self, request):
        if request["id"] == "b":
            raise KeyboardInterrupt
        asked.append(request["id"])
        return real_strategy(self, request)

    monkeypatch.setattr(Server, "strategy", stop_at_b)
    out = Run(tmp_path / "s", "compress serve", {})
    with pytest.raises(KeyboardInterrupt):
        serve(model, None, server, read_requests(reqs), calib, out, ppl=False, progress=False)
    (first,) = [json.loads(line) for line in out.path("results.jsonl").read_text().splitlines()]
    assert asked == ["a"] and first["id"] == "a"
    first["kl"] = -1.0  # a value serving would never produce: it must survive the resume
    # and a kill in the middle of writing b's line leaves half a line, which the resume redoes (issue 30)
    out.path("results.jsonl").write_text(json.dumps(first) + "\n" + '{"id": "b", "request": {"spars')

    def counting(self, request):
        asked.append(request["id"])
        return real_strategy(self, request)

    monkeypatch.setattr(Server, "strategy", counting)
    asked.clear()
    rows = serve(model, None, server, read_requests(reqs), calib, Run(tmp_path / "s", "compress serve", {}),
                 ppl=False, progress=False)
    assert asked == ["b", "c"] and [r["id"] for r in rows] == ["a", "b", "c"] and rows[0] == first
    assert [json.loads(line) for line in out.path("results.jsonl").read_text().splitlines()] == rows
    assert rows[1]["sparsity"] == pytest.approx(0.5, abs=0.02) and rows[2]["kl"] > 0


def test_shipped_gemma_stratnet_serves_the_real_model(gemma3, tmp_path):
    """Issue 15: `compress serve --stratnet gemma3-270m` works out of the box on the real Gemma 3 270M: the served
    strategy has the requested mean sparsity and the pruned model's KL is finite and positive."""
    import json

    req = tmp_path / "r.jsonl"
    req.write_text('{"id": "a", "sparsity": 0.4}\n')
    result = invoke("serve", "--stratnet", "gemma3-270m", "--requests", req, "--out", tmp_path / "o", "--no-ppl",
                    "--json")
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "o" / "results.jsonl").read_text())
    assert len(row["strategy"]) == 18 and abs(sum(row["strategy"]) / 18 - 0.4) < 1e-5
    assert 0 < row["kl"] < 10


def test_fit_cli_and_library_share_calibration_defaults():
    # a script calling fit() with CalibConfig() must calibrate like `headwise compress fit`
    import inspect

    from headwise.cli.compress import fit
    from headwise.compress.config import CalibConfig

    params = inspect.signature(fit).parameters
    for name in ("data", "seq_len", "windows", "ppl_windows", "method"):
        assert params[name].default.default == getattr(CalibConfig(), name), name
