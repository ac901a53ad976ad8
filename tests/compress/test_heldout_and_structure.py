"""Held-out windows, the GP's level/shape structure, StratNet's centred trust region and the fit's proposals aimed
at sparsities (issue 15)."""

import pytest
import torch

from headwise.compress import stratnet as sn
from headwise.compress.calibration import collect, heldout
from headwise.compress.config import CalibConfig, FitConfig
from headwise.compress.fit import _proposals
from headwise.compress.gp import GPSurrogate, level_and_shape
from headwise.compress.objectives import Evaluator, mean_kl
from headwise.compress.serve import SHIPPED, Server
from headwise.errors import HeadwiseError
from headwise.eval.perplexity import token_windows
from headwise.testing import ByteTokenizer, tiny_model


def test_heldout_windows_follow_the_calibration_windows_and_measure_reports_on_them(text_file):
    model, tok = tiny_model("llama"), ByteTokenizer()
    cfg = CalibConfig(data=str(text_file), seq_len=32, windows=2, ppl_windows=2)
    calib = collect(model, tok, cfg)
    ids, logp = heldout(model, tok, cfg, 3)
    every = token_windows(tok, text_file.read_text(), 32, 5)
    assert torch.equal(calib.ids, every[:2]) and torch.equal(ids, every[2:5])
    with torch.no_grad():
        assert torch.allclose(logp, torch.log_softmax(model(input_ids=ids).logits.float(), -1), atol=1e-6)
    ev = Evaluator(model, calib, heldout=(ids, logp))
    x = [0.5] * ev.num_blocks
    with ev.applied(x):
        on_heldout = mean_kl(model, ids, logp)
        on_calibration = mean_kl(model, calib.ids, calib.dense_logp)
    assert ev.measure(x, ppl=False)["kl"] == pytest.approx(on_heldout, rel=1e-9)
    assert ev.kl(x) == pytest.approx(on_calibration, rel=1e-9)  # what a fit or search optimises
    assert on_heldout != pytest.approx(on_calibration, rel=1e-3)


def test_too_few_heldout_windows_is_one_sentence(text_file):
    cfg = CalibConfig(data=str(text_file), seq_len=32, windows=2)
    with pytest.raises(HeadwiseError, match="fewer than the 999 held-out ones"):
        heldout(tiny_model("llama"), ByteTokenizer(), cfg, 999)


def test_level_and_shape():
    x = torch.tensor([[0.2, 0.4, 0.9]], dtype=torch.float64)
    z = level_and_shape(x)
    assert torch.allclose(z, torch.tensor([[0.5, -0.3, -0.1, 0.4]], dtype=torch.float64))


def _level_and_block_data(n=48, d=30, seed=0, noise=0.03):
    """log KL = a steep, curved function of the mean sparsity (the log of a logistic: not the quadratic the GP's
    prior mean can fit exactly), plus a small effect of block 0's deviation (pruning block 0 less helps: the
    pattern measured on SmolLM2), plus noise of the size of Wanda's rounding."""
    g = torch.Generator().manual_seed(seed)
    m = 0.1 + 0.7 * torch.rand(n, 1, generator=g, dtype=torch.float64)
    dev = 0.05 * (2 * torch.rand(n, d, generator=g, dtype=torch.float64) - 1)
    x = m + dev - dev.mean(-1, keepdim=True)
    level = torch.log(0.005 + 4 * torch.sigmoid(10 * (x.mean(-1) - 0.6)))
    y = level + 2.0 * (x[:, 0] - x.mean(-1)) + noise * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y, level


def test_the_gp_sees_a_shape_effect_next_to_a_steep_level_effect():
    x, y, _ = _level_and_block_data()
    gp = GPSurrogate().fit(x, y)
    xt, yt, level = _level_and_block_data(n=60, seed=1, noise=0.0)
    mean, _ = gp.posterior(xt)
    # The shape effect is at most 0.2 nats against a level range of 4.3: the GP must still rank it (0.91 here;
    # the plain ARD GP it replaced gets 0.84).
    corr = torch.corrcoef(torch.stack([(mean - level).detach(), yt - level]))[0, 1]
    assert corr > 0.9


def test_stratnet_offsets_are_centred_on_its_level():
    torch.manual_seed(0)
    net = sn.StratNet(6, hidden=16, max_ratio=0.9, spread=0.05).double()
    with torch.no_grad():
        net.net[-1].bias.copy_(torch.tensor([0.0, 3.0, 3.0, -1.0, 0.5, 0.0, 2.0], dtype=torch.float64))
        net.net[-1].weight.zero_()
        x = net(torch.tensor([[0.3, 0.7]], dtype=torch.float64))[0]
    t = torch.tanh(torch.tensor([3.0, 3.0, -1.0, 0.5, 0.0, 2.0], dtype=torch.float64))
    assert torch.allclose(x, 0.45 + 0.05 * (t - t.mean()))
    assert x.mean().item() == pytest.approx(0.45)


def test_training_keeps_the_offsets_out_of_saturation():
    x, y, _ = _level_and_block_data(d=8)
    gp = GPSurrogate().fit(x, y)
    torch.manual_seed(0)
    net = sn.StratNet(8, hidden=32, max_ratio=0.9, spread=0.05)
    sn.train(net, gp, sn.Normaliser(0.9, y.min().item(), y.max().item()), 150, 8, 0.0, 3e-3,
             torch.Generator().manual_seed(0))
    prefs = torch.tensor([[u, 1 - u] for u in (0.2, 0.5, 0.8)], dtype=torch.float64)
    with torch.no_grad():
        a = net.shape_activations(prefs)
        xs = net(prefs)
    assert (a.abs() > 2.5).double().mean() < 0.1  # 0 here; 0.42 with SATURATION_PENALTY = 0
    # ...and it still learnt the effect: block 0 is pruned less than the mean.
    assert (xs[:, 0] < xs.mean(-1) - 0.02).all()


def test_proposals_aim_at_sparsities_inside_the_range():
    torch.manual_seed(0)
    net = sn.StratNet(6, hidden=16, max_ratio=0.9, spread=0.05).double()
    fc = FitConfig(batch=4, min_sparsity=0.2, max_sparsity=0.6, spread=0.05)
    props = _proposals(net, fc, round_idx=0, seen=[])
    means = sorted(sum(p) / len(p) for p in props)
    # Round 0: targets 0.2 + 0.4 * k / 4 (k = 0..3), hit exactly by the shift.
    assert means == pytest.approx([0.2, 0.3, 0.4, 0.5], abs=1e-6)
    later = _proposals(net, fc, round_idx=1, seen=props)
    assert all(0.2 <= sum(p) / len(p) <= 0.6 for p in later)
    assert {round(sum(p) / len(p), 4) for p in later}.isdisjoint({round(m, 4) for m in means})


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_stratnets_use_the_preference(name):
    """Issue 15: the served strategies at sparsity 0.3 and 0.6 differ in shape after their means are removed, and
    the offsets are not saturated (the StratNet shipped before served one fixed profile: 77-97% of offsets'
    pre-activations beyond |2|, every target the same shape; its shape difference here was 0.10)."""
    server = Server(name)
    shapes, saturated = {}, []
    for s in (0.2, 0.3, 0.45, 0.6, 0.7):
        x, pref = server.strategy({"sparsity": s})
        x = torch.tensor(x, dtype=torch.float64)
        shapes[s] = x - x.mean()
        with torch.no_grad():
            saturated.append((server.net.shape_activations(torch.tensor([pref], dtype=torch.float64)).abs() > 2)
                             .double().mean().item())
    diff = (shapes[0.3] - shapes[0.6]).norm() / max(shapes[0.3].norm(), shapes[0.6].norm())
    assert diff > 0.2
    # Near the largest sparsities the GP asks for the most shape, so some offsets sit at the edge there.
    assert sum(saturated) / len(saturated) < 0.25 and max(saturated) < 0.5
