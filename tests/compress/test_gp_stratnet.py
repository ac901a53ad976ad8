"""GP surrogate gradients, StratNet training, the fit loop with resume, serving and saved models."""

import json

import pytest
import torch

from headwise.compress import stratnet as sn
from headwise.compress.config import CalibConfig, FitConfig
from headwise.compress.fit import calibration, fit
from headwise.compress.gp import GPSurrogate
from headwise.compress.serve import Server, serve
from headwise.compress.strategy import (check_preference, check_sparsity, preference_for_sparsity, project,
                                        read_requests)
from headwise.errors import HeadwiseError
from headwise.runs import Run
from headwise.testing import ByteTokenizer, tiny_model


def _toy_gp(d=5, n=30, kernel="matern"):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    y = (x * torch.arange(1, d + 1)).sum(1).sin() + x[:, 0] ** 2
    return GPSurrogate(kernel, iters=60).fit(x, y), x


@pytest.mark.parametrize("kernel", ["matern", "rbf"])
def test_gp_input_gradient_equals_finite_differences(kernel):
    gp, _ = _toy_gp(kernel=kernel)
    x = torch.tensor([[0.3, 0.6, 0.2, 0.8, 0.5]], dtype=torch.float64, requires_grad=True)
    mean, std = gp.posterior(x)
    (grad_mean,) = torch.autograd.grad(mean.sum(), x)
    x0 = x.detach()
    eps = 1e-6
    for i in range(5):
        step = torch.zeros_like(x0)
        step[0, i] = eps
        fd = (gp.posterior(x0 + step)[0] - gp.posterior(x0 - step)[0]).item() / (2 * eps)
        assert grad_mean[0, i].item() == pytest.approx(fd, rel=1e-4, abs=1e-6)
    xs = x0.clone().requires_grad_(True)
    (g_std,) = torch.autograd.grad(gp.posterior(xs)[1].sum(), xs)
    for i in range(5):
        step = torch.zeros_like(x0)
        step[0, i] = eps
        fd = (gp.posterior(x0 + step)[1] - gp.posterior(x0 - step)[1]).item() / (2 * eps)
        assert g_std[0, i].item() == pytest.approx(fd, rel=1e-3, abs=1e-6)


def test_gp_interpolates_its_training_data():
    gp, x = _toy_gp()
    mean, std = gp.posterior(x[:5])
    y = (x[:5] * torch.arange(1, 6)).sum(1).sin() + x[:5, 0] ** 2
    assert torch.allclose(mean.detach(), y, atol=0.05)


def test_stratnet_learns_the_trade_off_from_a_known_surrogate():
    # log KL rises with sparsity and is cheaper in the last block: StratNet should prune more with a larger
    # size weight, and prune the cheap block more.
    g = torch.Generator().manual_seed(1)
    x = torch.rand(40, 3, generator=g, dtype=torch.float64) * 0.9
    y = torch.log(0.01 + 2 * x[:, 0] ** 2 + 2 * x[:, 1] ** 2 + 0.2 * x[:, 2] ** 2)
    gp = GPSurrogate("matern", iters=100).fit(x, y)
    torch.manual_seed(0)
    net = sn.StratNet(3, hidden=64, max_ratio=0.9)
    norm = sn.Normaliser(0.9, y.min().item(), y.max().item())
    sn.train(net, gp, norm, steps=150, prefs_per_step=8, beta=0.0, lr=3e-3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lo = net(torch.tensor([[0.2, 0.8]], dtype=torch.float64))[0]
        hi = net(torch.tensor([[0.8, 0.2]], dtype=torch.float64))[0]
    assert hi.mean() > lo.mean() + 0.05
    assert hi[2] > hi[0] and hi[2] > hi[1]
    pref = preference_for_sparsity(net, (lo.mean().item() + hi.mean().item()) / 2)
    with torch.no_grad():
        mid = net(torch.tensor([pref], dtype=torch.float64))[0].mean().item()
    assert mid == pytest.approx((lo.mean().item() + hi.mean().item()) / 2, abs=1e-3)


def test_projection_hits_the_target_exactly():
    x = torch.tensor([0.1, 0.5, 0.9, 0.3], dtype=torch.float64)
    s = project(x, "unstructured", target=0.6, upper=0.9)
    assert sum(s) / 4 == pytest.approx(0.6, abs=1e-5) and max(s) <= 0.9
    assert project(x, "depth", target=0.5) == [0.0, 1.0, 1.0, 0.0]
    # A relaxed depth output asking for every block (a StratNet proposal while fitting) keeps one block;
    # an explicit request for all of them is refused.
    assert project(torch.ones(4, dtype=torch.float64) * 0.99, "depth") == [1.0, 1.0, 1.0, 0.0]
    with pytest.raises(HeadwiseError, match="remove all 4 blocks"):
        project(x, "depth", target=1.0)


@pytest.mark.parametrize("bad, message", [
    ([-0.2, 1.2], "non-negative"), ([0.3, 0.3], "sum to 1"), ([1.0], "two numbers"), ("ab", "two numbers"),
])
def test_bad_preferences(bad, message):
    with pytest.raises(HeadwiseError, match=message):
        check_preference(bad)


@pytest.mark.parametrize("bad", [-0.1, 0.96, float("nan"), "x"])
def test_bad_sparsity(bad):
    with pytest.raises(HeadwiseError):
        check_sparsity(bad)


def test_requests_file_errors_name_the_line(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"sparsity": 0.5}\n{"preference": [0.5, 0.6]}\n')
    with pytest.raises(HeadwiseError, match="line 2: preference weights must sum to 1"):
        read_requests(p)
    p.write_text('{"sparsity": 0.5, "preference": [0.5, 0.5]}\n')
    with pytest.raises(HeadwiseError, match="exactly one"):
        read_requests(p)


@pytest.fixture
def fitted(tmp_path, text_file):
    model = tiny_model("llama")
    cc = CalibConfig(data=str(text_file), seq_len=32, windows=2, ppl_windows=2)
    fc = FitConfig(evals=10, initial=6, batch=2, steps=40, gp_iters=40)
    run = Run(tmp_path / "fit", "compress fit", {"a": 1})
    summary = fit(model, ByteTokenizer(), "tiny-llama", cc, fc, run, progress=False)
    return model, run, summary, cc, fc


def test_fit_spends_the_budget_and_resumes_without_new_evaluations(fitted, monkeypatch):
    model, run, summary, cc, fc = fitted
    assert summary["evaluations"] == 10
    state = json.loads(run.path("evals.json").read_text())
    assert len(state["x"]) == len(state["kl"]) == 10
    # Resuming a finished run evaluates nothing.
    from headwise.compress import objectives

    monkeypatch.setattr(objectives.Evaluator, "kl", lambda *a, **k: pytest.fail("re-evaluated"))
    again = fit(model, ByteTokenizer(), "tiny-llama", cc, fc, Run(run.dir, "compress fit", {"a": 1}), progress=False)
    assert again == summary


def test_interrupted_fit_continues_from_its_checkpoint(tmp_path, text_file, monkeypatch):
    from headwise.compress import objectives

    model = tiny_model("llama")
    cc = CalibConfig(data=str(text_file), seq_len=32, windows=2, ppl_windows=2)
    fc = FitConfig(evals=8, initial=4, batch=2, steps=20, gp_iters=20)
    real = objectives.Evaluator.kl
    calls = {"n": 0}

    def flaky(self, strategy, windows=None):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(self, strategy, windows)

    monkeypatch.setattr(objectives.Evaluator, "kl", flaky)
    with pytest.raises(KeyboardInterrupt):
        fit(model, ByteTokenizer(), "t", cc, fc, Run(tmp_path / "f", "compress fit", {}), progress=False)
    assert len(json.loads((tmp_path / "f" / "evals.json").read_text())["x"]) == 5
    monkeypatch.setattr(objectives.Evaluator, "kl", real)
    summary = fit(model, ByteTokenizer(), "t", cc, fc, Run(tmp_path / "f", "compress fit", {}), progress=False)
    assert summary["evaluations"] == 8


def test_serve_saves_models_that_reload_with_identical_logits(fitted, tmp_path):
    import transformers as tf

    model, run, _, cc, _ = fitted
    server = Server(run.dir)
    reqs = tmp_path / "r.jsonl"
    reqs.write_text('{"sparsity": 0.5, "id": "half"}\n{"preference": [0.7, 0.3]}\n')
    calib = calibration(model, ByteTokenizer(), server.calib_config)
    out = Run(tmp_path / "serve", "compress serve", {})
    rows = serve(model, None, server, read_requests(reqs), calib, out, save=True, progress=False)
    assert rows[0]["sparsity"] == pytest.approx(0.5, abs=0.02) and len(rows[0]["strategy"]) == 2
    assert rows[0]["kl"] > 0 and rows[0]["ppl"] > 1
    ids = calib.ids[:1]
    for row in rows:
        reloaded = tf.AutoModelForCausalLM.from_pretrained(out.dir / row["id"]).eval()
        server_model_strategy = row["strategy"]
        from headwise.compress.wanda import WandaPruner

        pruner = WandaPruner(model, calib.norms)
        pruner.apply(server_model_strategy)
        with torch.no_grad():
            assert torch.equal(model(ids).logits, reloaded(ids).logits)
        pruner.restore()
    lines = (out.dir / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["half", "r001"]


def test_stratnet_for_another_model_is_refused(fitted):
    _, run, *_ = fitted
    other = tiny_model("llama", seed=5)
    with pytest.raises(HeadwiseError, match="trained for 'tiny-llama'"):
        Server(run.dir).check_model(other)


def test_depth_fit_and_serve_round_trip(tmp_path, text_file):
    import transformers as tf

    cfg = tiny_model("llama").config.to_dict() | {"num_hidden_layers": 4}
    torch.manual_seed(0)
    model = tf.LlamaForCausalLM(tf.LlamaConfig.from_dict(cfg)).eval()
    cc = CalibConfig(data=str(text_file), seq_len=32, windows=2, ppl_windows=2)
    fc = FitConfig(space="depth", evals=8, initial=4, batch=2, steps=20, gp_iters=20, max_sparsity=0.5)
    run = Run(tmp_path / "fit", "compress fit", {})
    fit(model, ByteTokenizer(), "tiny4", cc, fc, run, progress=False)
    reqs = tmp_path / "r.jsonl"
    reqs.write_text('{"sparsity": 0.5, "id": "d"}\n')
    server = Server(run.dir)
    out = Run(tmp_path / "serve", "compress serve", {})
    (row,) = serve(model, None, server, read_requests(reqs), calibration(model, ByteTokenizer(), cc), out,
                   save=True, progress=False)
    assert sum(row["strategy"]) == 2 and row["sparsity"] == 0.5
    reloaded = tf.AutoModelForCausalLM.from_pretrained(out.dir / "d").eval()
    assert reloaded.config.num_hidden_layers == 2
    out_ids = reloaded.generate(torch.randint(3, 100, (1, 5)), max_new_tokens=4, do_sample=False)
    assert out_ids.shape[1] == 9
    assert model.config.num_hidden_layers == 4  # the served model was restored
