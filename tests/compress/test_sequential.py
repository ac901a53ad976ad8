"""Sequential pruning (CalibConfig.inputs = "sequential", locuslab/wanda's order) on tiny models: block i's masks
come from the inputs of the already pruned blocks before it, checked against whole-model passes recorded by
hooks of the test's own; restore is exact; the Evaluator and the faithful preset use it."""

import pytest
import torch

from headwise.compress import sequential
from headwise.compress.calibration import block_linears
from headwise.compress.config import CalibConfig
from headwise.compress.objectives import Evaluator
from headwise.errors import HeadwiseError
from headwise.heads.layout import layout
from tests.compress.test_pruning import reference_wanda_mask


def weights(model) -> dict:
    return {(b, n): (m.weight.t() if type(m).__name__ == "Conv1D" else m.weight).detach().clone()
            for b, ls in enumerate(block_linears(model)) for n, m in ls}


@pytest.mark.parametrize("family", ["llama", "gpt2", "opt"])
def test_each_block_is_pruned_on_the_pruned_blocks_outputs(family, calibrate, linear_inputs):
    model, calib = calibrate(family)
    dense = weights(model)
    ratios = [0.5, 0.3]
    # Independently: prune block 0 from dense inputs, then record block 1's inputs with block 0 pruned.
    expected = {}
    for b in range(2):
        inputs = linear_inputs(model, calib.ids)
        for name, mod in block_linears(model)[b]:
            expected[(b, name)] = reference_wanda_mask(dense[(b, name)], inputs[(b, name)], ratios[b], True)
            w = mod.weight.t() if type(mod).__name__ == "Conv1D" else mod.weight
            w.data[expected[(b, name)]] = 0
    for b, ls in enumerate(block_linears(model)):
        for name, mod in ls:
            mod.weight.data.copy_(dense[(b, name)].t() if type(mod).__name__ == "Conv1D" else dense[(b, name)])

    pruner = sequential.prune(model, calib.ids, ratios, "wanda", "floor", batch_size=1)
    for (b, name), w in weights(model).items():
        assert torch.equal((w == 0) & (dense[(b, name)] != 0), expected[(b, name)]), (family, b, name)
    pruner.restore()
    assert all(torch.equal(w, dense[k]) for k, w in weights(model).items())


def test_sequential_sparsegpt_restores_and_differs_from_one_shot(calibrate):
    model, calib = calibrate("llama", windows=8, method="sparsegpt")
    dense = weights(model)
    ev = Evaluator(model, calib, method="sparsegpt", rounding="floor", inputs="sequential", batch_size=4)
    one_shot = Evaluator(model, calib, method="sparsegpt", rounding="floor", batch_size=4)
    with ev.applied([0.5, 0.5]) as achieved:
        seq = weights(model)
    with one_shot.applied([0.5, 0.5]):
        dense_inputs = weights(model)
    assert achieved == pytest.approx(0.5, abs=0.02)
    # Block 0 sees the same inputs either way (up to the order of the Hessian's sums); block 1 does not.
    assert torch.allclose(seq[(0, "self_attn.q_proj")], dense_inputs[(0, "self_attn.q_proj")], atol=1e-5)
    assert not torch.allclose(seq[(1, "mlp.down_proj")], dense_inputs[(1, "mlp.down_proj")], atol=1e-3)
    assert all(torch.equal(w, dense[k]) for k, w in weights(model).items())


def test_faithful_preset_is_sequential_and_floor_and_bad_inputs_are_refused():
    assert CalibConfig.resolve("faithful").inputs == "sequential"
    assert CalibConfig.resolve("faithful").rounding == "floor"
    assert CalibConfig().inputs == "dense"
    assert CalibConfig.from_dict({"data": "wiki-en"}).inputs == "dense"  # runs recorded before the field resume
    with pytest.raises(HeadwiseError, match="unknown inputs 'pruned'"):
        CalibConfig(inputs="pruned").validate()


def test_running_mean_is_the_summed_statistic_rounded_as_the_reference(tiny_llama):
    """locuslab/wanda's WrappedGPT keeps a running mean over windows of squared norms; the square root of N
    times it is the summed statistic."""
    from headwise.compress.calibration import Recorder, dense_logp

    model, calib = tiny_llama
    summed, running = Recorder(block_linears(model)), Recorder(block_linears(model), running_mean=True)
    with summed, running:
        dense_logp(model, calib.ids, batch_size=1)
    n = len(calib.ids)
    for a, b in zip(summed.norms(), running.norms()):
        for name in a:
            assert torch.allclose(a[name], b[name] * n ** 0.5, rtol=1e-5)


def test_blocks_after_the_last_pruned_one_are_never_run(tiny_llama):
    """A strategy whose tail stays dense needs no inputs for the tail: the capturing pass stops at the last pruned
    block, and the pruned blocks are those of a run that went through every block."""
    model, calib = tiny_llama
    last_block = layout(model).layers[-1]
    calls = []
    handle = last_block.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        pruner = sequential.prune(model, calib.ids, [0.5, 0.0], "wanda", "floor", batch_size=1)
    finally:
        handle.remove()
    assert calls == []
    early = weights(model)
    pruner.restore()
    hidden, per_block = sequential.block_calls(model, calib.ids, 1, last=0)
    assert len(per_block[0]) == len(calib.ids) and per_block[1] == []
    pruner = sequential.prune(model, calib.ids, [0.5, 1e-9], "wanda", "floor", batch_size=1)  # runs block 1
    try:
        assert all(torch.equal(w, early[k]) for k, w in weights(model).items() if k[0] == 0)
    finally:
        pruner.restore()
    assert sequential.prune(model, calib.ids, [0.0, 0.0], "wanda").achieved() == 0.0


@pytest.mark.parametrize("ratios", [[0.5], [0.5, 0.0, 0.3], [0.5, -0.1], [0.5, float("nan")], [1.5, 0.0]])
def test_bad_ratios_are_refused_before_anything_is_pruned(tiny_llama, ratios):
    model, calib = tiny_llama
    dense = weights(model)
    with pytest.raises(HeadwiseError, match=r"per-block values|must lie in \[0, 1\]"):
        sequential.prune(model, calib.ids, ratios, "wanda")
    assert all(torch.equal(w, dense[k]) for k, w in weights(model).items())
