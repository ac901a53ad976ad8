"""SparseGPT: masks and updates against a straightforward re-implementation, exact per-row sparsity, cached
Hessians, exact restore, lower reconstruction error than Wanda, and the method's path through fit, serve and the
command line."""

import json
import sys

import pytest
import torch

from headwise.compress import sparsegpt
from headwise.compress.calibration import Calibration, block_linears
from headwise.compress.config import CalibConfig, FitConfig
from headwise.compress.fit import fit
from headwise.compress.objectives import Evaluator
from headwise.compress.serve import Server, serve
from headwise.compress.sparsegpt import SparseGPTPruner
from headwise.compress.strategy import read_requests
from headwise.compress.wanda import WandaPruner
from headwise.runs import Run
from headwise.testing import ByteTokenizer

BLOCK = 16  # columns per lazy-update block: the tiny layers (32 and 64 inputs) span several


def reference_sparsegpt(w, x, ratio, blocksize, mask_rule="row", nm=None):
    """SparseGPT written out column by column in float64, with explicit inverses instead of Cholesky factors.

    H = 2 X^T X / tokens plus 1% of its mean diagonal. Hinv, the inverse Hessian of the columns not yet fixed,
    loses one column at a time by Gaussian elimination. Pruning w_q moves its row's free weights by
    -(w_q / Hinv_qq) Hinv_q. Costs are w_j^2 / Hinv_jj, Hinv_jj taken when j is fixed, i.e. inv(H[j:, j:])[0, 0].
    The mask rules, at each block start:
    - "row" (the pruner's default): the prunes a row still owes go to its lowest-cost columns among those not yet
      fixed;
    - "block": locuslab/wanda lib/sparsegpt.py:84-86, every cost of the block at most its int(numel * ratio)-th
      smallest;
    - nm=(n, m): lib/sparsegpt.py:94-96, at every m-th column the n lowest costs of each row among the next m,
      on the weights as updated so far.
    """
    w, x = w.double().clone(), x.double()
    h = 2 * x.T @ x / len(x)
    h += 0.01 * h.diagonal().mean() * torch.eye(len(h), dtype=h.dtype)
    n = len(h)
    k = round(ratio * n)
    diag_when_fixed = torch.stack([torch.linalg.inv(h[j:, j:])[0, 0] for j in range(n)])
    hinv = torch.linalg.inv(h)
    mask = torch.zeros_like(w, dtype=torch.bool)
    for j in range(n):
        if nm is not None and j % nm[1] == 0:
            cost = w[:, j:j + nm[1]] ** 2 / diag_when_fixed[j:j + nm[1]]
            mask.scatter_(1, j + torch.topk(cost, nm[0], dim=1, largest=False)[1], True)
        elif nm is None and j % blocksize == 0 and mask_rule == "block":
            cost = w[:, j:j + blocksize] ** 2 / diag_when_fixed[j:j + blocksize]
            mask[:, j:j + blocksize] = cost <= torch.sort(cost.flatten())[0][int(cost.numel() * ratio)]
        elif nm is None and j % blocksize == 0:
            cost = w[:, j:] ** 2 / diag_when_fixed[j:]
            for r in range(len(w)):
                chosen = torch.argsort(cost[r], stable=True)[:k - int(mask[r].sum())] + j
                mask[r, chosen[chosen < j + blocksize]] = True
        rows = mask[:, j]
        w[rows, j:] -= (w[rows, j] / hinv[0, 0])[:, None] * hinv[0][None, :]
        w[rows, j] = 0
        hinv = hinv[1:, 1:] - hinv[1:, :1] @ hinv[:1, 1:] / hinv[0, 0]
    return w, mask


def weights(model) -> dict:
    return {(b, name): mod.weight.detach().clone()
            for b, linears in enumerate(block_linears(model)) for name, mod in linears}


@pytest.mark.parametrize("mask_rule, pattern", [("row", "unstructured"), ("block", "unstructured"),
                                                ("row", "2:4")])
def test_masks_and_updates_match_a_straightforward_reimplementation(calibrate, linear_inputs, mask_rule, pattern):
    model, calib = calibrate("llama", method="sparsegpt", dtype=torch.float64)
    inputs = linear_inputs(model, calib.ids)
    dense = weights(model)
    ratios = [0.3, 0.6]
    nm = (2, 4) if pattern == "2:4" else None
    SparseGPTPruner(model, calib.hessians, blocksize=BLOCK, mask=mask_rule, pattern=pattern).apply(ratios)
    for (b, name), w in weights(model).items():
        expected, mask = reference_sparsegpt(dense[(b, name)], inputs[(b, name)], ratios[b], BLOCK, mask_rule, nm)
        assert torch.equal(w == 0, mask), (b, name)
        torch.testing.assert_close(w, expected, rtol=1e-9, atol=1e-9)
        assert not torch.equal(w[~mask], dense[(b, name)][~mask])  # the kept weights were updated
        if nm:  # the N:M invariant: exactly n zeros in every group of m consecutive inputs, whatever the ratio
            assert ((w == 0).reshape(len(w), -1, 4).sum(-1) == 2).all()


def test_the_default_mask_is_the_references_block_threshold_and_old_records_read_with_it():
    """lib/sparsegpt.py:84-86 is the default (it cost less perplexity, docs/parity.md); a calibration record
    written before `pattern` and `sparsegpt_mask` existed reads back with the defaults, as every new field, so
    that the command that wrote it finds its run again (tests/test_resume.py)."""
    assert CalibConfig().sparsegpt_mask == "block"
    old = {k: v for k, v in CalibConfig(method="sparsegpt").to_dict().items() if k not in ("pattern", "sparsegpt_mask")}
    assert CalibConfig.from_dict(old) == CalibConfig(method="sparsegpt")
    assert CalibConfig.from_dict(CalibConfig().to_dict()).sparsegpt_mask == "block"


def test_the_faithful_hessian_is_the_references_running_mean(calibrate, linear_inputs):
    """locuslab/wanda lib/sparsegpt.py:27-38 folds each window into H * n / (n + 1) + 2 / (n + 1) X^T X: the mean
    over windows of 2 X^T X, seq_len times headwise's per-token mean."""
    from headwise.compress.calibration import Recorder

    model, calib = calibrate("llama", windows=3, method="sparsegpt")
    with Recorder(block_linears(model), True, running_mean=True) as rec:
        model(input_ids=calib.ids, use_cache=False)  # three windows in one batch: folded one by one
    seq_len = calib.ids.shape[1]
    for b, block in enumerate(rec.hessians()):
        for name, h in block.items():
            torch.testing.assert_close(h, calib.hessians[b][name] * seq_len, rtol=1e-4, atol=1e-4)


def test_the_row_mask_gives_every_row_exactly_its_share(calibrate):
    model, calib = calibrate("llama", method="sparsegpt")
    ratios = [0.37, 0.81]
    achieved = SparseGPTPruner(model, calib.hessians, mask="row").apply(ratios)
    for (b, _), w in weights(model).items():
        assert ((w == 0).sum(1) == round(ratios[b] * w.shape[1])).all()
    assert abs(achieved - sum(ratios) / 2) < 0.02


def test_hessians_are_shared_by_linears_with_one_input_and_survive_the_cache(calibrate, tmp_path):
    _, calib = calibrate("llama", method="sparsegpt")
    calib.save(tmp_path / "c.safetensors")
    for hessians in (calib.hessians, Calibration.load(tmp_path / "c.safetensors", 2).hessians):
        block = hessians[1]
        assert block["self_attn.q_proj"] is block["self_attn.k_proj"] is block["self_attn.v_proj"]
        assert block["mlp.gate_proj"] is block["mlp.up_proj"]
        assert len({id(h) for h in block.values()}) == 4
        torch.testing.assert_close(block["mlp.down_proj"], calib.hessians[1]["mlp.down_proj"], rtol=0, atol=0)


def test_restore_is_exact_and_unchanged_blocks_are_not_recomputed(calibrate, monkeypatch):
    model, calib = calibrate("llama", method="sparsegpt")
    calls, factors = [], []
    monkeypatch.setattr(sparsegpt, "prune", lambda *a, _real=sparsegpt.prune, **k: calls.append(1) or _real(*a, **k))
    monkeypatch.setattr(sparsegpt, "inverse_factor",
                        lambda *a, _real=sparsegpt.inverse_factor, **k: factors.append(1) or _real(*a, **k))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruner = SparseGPTPruner(model, calib.hessians)
    pruner.apply([0.5, 0.9])
    per_block = len(calls) // 2  # the block mask thresholds each linear alone: 7 per block
    assert per_block == 7
    assert len(factors) == 2 * 4  # q/k/v, o, gate/up, down: one shared Hessian, one factorisation each
    pruner.apply([0.2, 0.9])
    assert len(calls) == 3 * per_block  # only block 0 changed
    pruned = weights(model)
    pruner.restore()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    pruner.apply([0.2, 0.9])  # both blocks come from the cache of their last ratio
    assert len(calls) == 3 * per_block
    assert all(torch.equal(pruned[k], v) for k, v in weights(model).items())
    pruner.restore()
    for k, v in model.state_dict().items():
        assert torch.equal(before[k], v), k


def test_sparsegpt_reconstructs_layer_outputs_better_than_wanda(calibrate, linear_inputs):
    model, calib = calibrate("llama", windows=4, method="sparsegpt")
    inputs = linear_inputs(model, calib.ids)
    dense = weights(model)
    errors = {}
    for name, pruner in (("wanda", WandaPruner(model, calib.norms)),
                         ("sparsegpt", SparseGPTPruner(model, calib.hessians))):
        pruner.apply([0.5, 0.5])
        errors[name] = {k: torch.linalg.norm(inputs[k] @ (dense[k] - w).T).item() for k, w in weights(model).items()}
        pruner.restore()
    for k in dense:
        assert errors["sparsegpt"][k] < errors["wanda"][k], k


def test_fit_and_serve_use_the_stratnets_method(tmp_path, text_file):
    from headwise.testing import tiny_model

    model = tiny_model("llama")
    cc = CalibConfig(data=str(text_file), seq_len=32, windows=2, ppl_windows=2, method="sparsegpt")
    run = Run(tmp_path / "fit", "compress fit", {})
    fit(model, ByteTokenizer(), "tiny", cc, FitConfig(evals=4, initial=2, batch=2, steps=5, gp_iters=5), run,
        progress=False)
    server = Server(run.dir)
    assert server.calib_config.method == "sparsegpt"
    calib = Calibration.load(run.path("calibration.safetensors"), 2)
    reqs = tmp_path / "r.jsonl"
    reqs.write_text('{"sparsity": 0.6}\n')
    (row,) = serve(model, None, server, read_requests(reqs), calib, Run(tmp_path / "s", "compress serve", {}),
                   ppl=False, progress=False)
    kl = {m: Evaluator(model, calib, method=m).kl(row["strategy"]) for m in ("sparsegpt", "wanda")}
    assert row["kl"] == pytest.approx(kl["sparsegpt"]) and kl["sparsegpt"] != pytest.approx(kl["wanda"])
    # A StratNet saved before the method existed is Wanda's.
    meta = json.loads((run.dir / "stratnet.json").read_text())
    del meta["calibration"]["method"]
    (run.dir / "stratnet.json").write_text(json.dumps(meta))
    assert Server(run.dir).calib_config.method == "wanda"


def test_an_unknown_method_is_one_sentence_and_exit_2(monkeypatch, capsys, tmp_path):
    from headwise.cli import main

    monkeypatch.setattr(sys, "argv", ["headwise", "compress", "fit", "--model", "smollm2", "--method", "nope",
                                      "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown pruning method 'nope'" in err[0]
    assert not (tmp_path / "o").exists()


def test_too_few_calibration_tokens_for_sparsegpt_are_warned_about(calibrate):
    with pytest.warns(UserWarning, match="fewer than the widest layer input"):
        calibrate("llama", windows=1, method="sparsegpt")
