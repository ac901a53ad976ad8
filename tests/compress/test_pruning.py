"""Wanda masks, per-block sparsity, exact restore and depth pruning on tiny models."""

import pytest
import torch

from headwise.compress.calibration import block_linears, collect
from headwise.compress.config import CalibConfig
from headwise.compress.depth import DepthPruner
from headwise.compress.objectives import Evaluator, mean_kl, tchebycheff
from headwise.compress.wanda import WandaPruner
from headwise.errors import HeadwiseError
from headwise.testing import ByteTokenizer, tiny_model


def reference_wanda_mask(weight_out_in, inputs, ratio, faithful):
    """Wanda as in locuslab/wanda (lib/prune.py, prune_wanda): metric |W| * sqrt(sum of squared inputs), a stable
    per-row sort, and the lowest int(in_features * ratio) pruned. Ours rounds that count instead (named in
    `Linear.pruned_per_row`); faithful=True follows the reference."""
    metric = weight_out_in.abs() * inputs.pow(2).sum(0).sqrt()[None, :]
    k = int(metric.shape[1] * ratio) if faithful else int(round(ratio * metric.shape[1]))
    mask = torch.zeros_like(metric, dtype=torch.bool)
    mask.scatter_(1, torch.sort(metric, dim=-1, stable=True)[1][:, :k], True)
    return mask


@pytest.mark.parametrize("family", ["llama", "gpt2", "opt"])
@pytest.mark.parametrize("faithful", [False, True])
def test_wanda_masks_match_an_independent_computation(family, faithful, calibrate, linear_inputs):
    model, calib = calibrate(family)
    inputs = linear_inputs(model, calib.ids)
    dense = {k: (m.weight.t() if type(m).__name__ == "Conv1D" else m.weight).detach().clone()
             for k, m in ((( b, n), m) for b, ls in enumerate(block_linears(model)) for n, m in ls)}
    pruner = WandaPruner(model, calib.norms, rounding="floor" if faithful else "nearest")
    ratios = [0.3, 0.6]  # 0.3 of 32 inputs: 9.6, where int() and round() disagree (9 and 10 weights per row)
    pruner.apply(ratios)
    for b, linears in enumerate(block_linears(model)):
        for name, mod in linears:
            w = mod.weight.t() if type(mod).__name__ == "Conv1D" else mod.weight
            expected = reference_wanda_mask(dense[(b, name)], inputs[(b, name)], ratios[b], faithful)
            pruned = (w == 0) & (dense[(b, name)] != 0)
            assert torch.equal(pruned, expected), (family, b, name)


def test_reference_truncates_the_count_and_ours_rounds_it(tiny_llama):
    model, calib = tiny_llama
    for faithful, per_row in ((True, 9), (False, 10)):  # locuslab/wanda: int(32 * 0.3) = 9; ours: round(9.6) = 10
        pruner = WandaPruner(model, calib.norms, rounding="floor" if faithful else "nearest")
        pruner.apply([0.3, 0.0])
        q_proj = model.model.layers[0].self_attn.q_proj.weight
        assert q_proj.shape[1] == 32 and ((q_proj == 0).sum(1) == per_row).all()
        pruner.restore()


def test_per_block_sparsity_is_the_requested_ratio_to_one_weight_per_row(tiny_llama):
    model, calib = tiny_llama
    pruner = WandaPruner(model, calib.norms)
    ratios = [0.37, 0.81]
    achieved = pruner.apply(ratios)
    for b, linears in enumerate(block_linears(model)):
        for _, mod in linears:
            zeros_per_row = (mod.weight == 0).sum(1).float()
            assert ((zeros_per_row - ratios[b] * mod.weight.shape[1]).abs() <= 1).all()
    assert abs(achieved - sum(ratios) / 2) < 0.02


def test_apply_then_restore_gives_the_dense_weights_back_exactly(tiny_llama):
    model, calib = tiny_llama
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruner = WandaPruner(model, calib.norms)
    pruner.apply([0.5, 0.9])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    pruner.apply([0.2, 0.9])  # only the changed block is re-masked
    pruner.restore()
    for k, v in model.state_dict().items():
        assert torch.equal(before[k], v), k


def test_kl_is_zero_for_the_dense_model_and_grows_with_sparsity(tiny_llama):
    model, calib = tiny_llama
    ev = Evaluator(model, calib, "unstructured")
    assert ev.kl([0.0, 0.0]) == pytest.approx(0.0, abs=1e-6)
    assert 0 < ev.kl([0.3, 0.3]) < ev.kl([0.9, 0.9])
    assert mean_kl(model, calib.ids, calib.dense_logp) == pytest.approx(0.0, abs=1e-6)  # restored


def test_kl_is_kl_of_the_dense_from_the_pruned_model_averaged_over_tokens(text_file):
    """f2 = (1/T) sum_t sum_v p_dense (log p_dense - log p_pruned): KL(dense || pruned), as EvoPress computes it
    (unicuco.md section 2.2). KL(pruned || dense) has the same zero and grows too, so the value is checked."""
    model = tiny_model("llama")
    with torch.no_grad():
        model.lm_head.weight.mul_(30)  # peaked next-token distributions, so the two directions differ by a lot
    calib = collect(model, ByteTokenizer(), CalibConfig(data=str(text_file), seq_len=32, windows=2, ppl_windows=2))
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=calib.ids, use_cache=False).logits.float(), -1)
        pruner = WandaPruner(model, calib.norms)
        pruner.apply([0.5, 0.7])
        logq = torch.log_softmax(model(input_ids=calib.ids, use_cache=False).logits.float(), -1)
        pruner.restore()
    dense_from_pruned = (logp.exp() * (logp - logq)).sum(-1).mean().item()
    pruned_from_dense = (logq.exp() * (logq - logp)).sum(-1).mean().item()
    assert abs(dense_from_pruned - pruned_from_dense) > 0.03 * dense_from_pruned  # the test can tell them apart
    assert Evaluator(model, calib, "unstructured").kl([0.5, 0.7]) == pytest.approx(dense_from_pruned, rel=1e-4)


def test_wrong_length_strategy_is_refused(tiny_llama):
    model, calib = tiny_llama
    ev = Evaluator(model, calib, "unstructured")
    with pytest.raises(HeadwiseError, match="needs 2 per-block values"):
        ev.kl([0.5, 0.5, 0.5])
    with pytest.raises(HeadwiseError, match="lie in"):
        ev.kl([0.5, 1.5])


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "gemma3_text"])
def test_depth_pruned_model_generates_with_kv_cache(family):
    model = tiny_model(family)
    # Four blocks so that removing some leaves a renumbered stack.
    cfg = model.config
    cfg_dict = cfg.to_dict()
    n_key = "n_layer" if family == "gpt2" else "num_hidden_layers"
    cfg_dict[n_key] = 4
    cfg_dict.pop("layer_types", None)
    torch.manual_seed(0)
    model = type(model)(type(cfg).from_dict(cfg_dict)).eval()
    pruner = DepthPruner(model)
    pruner.apply([0, 1, 0, 1])
    ids = torch.randint(3, 100, (1, 6))
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=5, do_sample=False, use_cache=True)
        slow = model.generate(ids, max_new_tokens=5, do_sample=False, use_cache=False)
    assert out.shape[1] == 11
    assert torch.equal(out, slow)  # a cache indexed by the wrong layer would change the continuation
    pruner.restore()
    assert model.config.get_text_config().num_hidden_layers == 4


def test_tchebycheff_takes_the_weighted_worst_objective():
    f = torch.tensor([[0.2, 0.8]])
    value = tchebycheff(f, torch.tensor([[0.5, 0.5]]), torch.zeros(2), augment=0.0)
    assert value.item() == pytest.approx(0.4)


def test_tchebycheff_by_hand_with_uneven_weights_an_ideal_point_and_augmentation():
    # lambda (0.8, 0.2), z* (0.1, 0.4), rho 0.05: gaps 0.8 * 0.2 = 0.16 and 0.2 * 0.5 = 0.10,
    # g = max + rho * sum = 0.16 + 0.05 * 0.26 = 0.173 (unicuco.md section 2.4, augmented as in PSL-MOBO).
    # Swapped weights give 0.422, z* ignored 0.261, no augmentation 0.16, weights 1/lambda 2.5 + 0.05 * 2.75.
    f = torch.tensor([[0.3, 0.9]])
    value = tchebycheff(f, torch.tensor([[0.8, 0.2]]), torch.tensor([0.1, 0.4]), augment=0.05)
    assert value.item() == pytest.approx(0.173)
