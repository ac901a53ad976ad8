"""scale_heads(fold=True): scaling the out-projection's input columns in the weights is the hook's computation.

The identity pinned here is linear algebra, not this code's output: W (g * x) = (W diag(g)) x. With
factors that are powers of two or zero both sides round the same way, so the tests ask for equal bits;
other factors round apart, so they must run the hooks.
"""

import pytest
import torch

from headwise.heads import capture_heads, layout, scale_heads
from headwise.testing import FAMILIES, model_inputs, text_batch, tiny_model


def logits(model, family, ids, mask=None):
    return model(**model_inputs(family, ids, mask)).logits


def factors_for(lay, seed=0, values=(2.0, 0.0, 0.5)):
    g = torch.Generator().manual_seed(seed)
    f = torch.ones(lay.shape)
    for layer in range(lay.num_layers):
        heads = torch.randperm(lay.num_heads, generator=g)[: len(values)]
        f[layer, heads] = torch.tensor(values[: len(heads)])
    return f


def weights(lay):
    return [lay.out_weight(layer).detach().clone() for layer in range(lay.num_layers)]


def hooked(lay) -> bool:
    return any(proj._forward_pre_hooks for proj in lay.out_projs)


@pytest.mark.parametrize("family", FAMILIES)
@torch.no_grad()
def test_folded_scaling_equals_the_hooks_bit_for_bit_and_restores_the_weights(family):
    model = tiny_model(family)
    lay = layout(model)
    ids, mask = text_batch(3, 9, left_pad=2)
    before = weights(lay)
    factors = factors_for(lay)
    with scale_heads(model, factors):
        assert hooked(lay)
        by_hooks = logits(model, family, ids, mask)
    with scale_heads(model, factors, fold=True):
        assert not hooked(lay)  # the weights carry the factors: no hook runs per forward
        assert any(not torch.equal(w, b) for w, b in zip(weights(lay), before))
        folded = logits(model, family, ids, mask)
    assert torch.equal(folded, by_hooks)
    assert all(torch.equal(w, b) for w, b in zip(weights(lay), before))
    assert (by_hooks - logits(model, family, ids, mask)).abs().max() > 1e-4  # the factors mattered


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2", "llava", "qwen2_vl"])
@torch.no_grad()
def test_folded_generation_equals_hooked_generation(family):
    model = tiny_model(family)
    ids, _ = text_batch(1, 6)
    factors = factors_for(layout(model), seed=1, values=(4.0, 0.0))
    kwargs = {"max_new_tokens": 8, "min_new_tokens": 8, "do_sample": False, "pad_token_id": 0,
              "output_logits": True, "return_dict_in_generate": True}
    with scale_heads(model, factors):
        hooks = model.generate(**model_inputs(family, ids), **kwargs)
    with scale_heads(model, factors, fold=True):
        folded = model.generate(**model_inputs(family, ids), **kwargs)
    assert torch.equal(hooks.sequences, folded.sequences)
    assert torch.equal(torch.stack(hooks.logits), torch.stack(folded.logits))


@torch.no_grad()
def test_negative_and_fractional_powers_of_two_fold_exactly():
    model = tiny_model("qwen2", dtype=torch.bfloat16)
    lay = layout(model)
    ids, mask = text_batch(2, 8, left_pad=2)
    factors = factors_for(lay, values=(0.5, -2.0, 0.25))
    with scale_heads(model, factors):
        by_hooks = logits(model, "qwen2", ids, mask)
    with scale_heads(model, factors, fold=True):
        assert not hooked(lay)
        folded = logits(model, "qwen2", ids, mask)
    assert torch.equal(folded, by_hooks)


@torch.no_grad()
def test_bf16_folding_is_exact_for_alpha_two():
    model = tiny_model("llama", dtype=torch.bfloat16)
    lay = layout(model)
    ids, _ = text_batch(2, 8)
    before = weights(lay)
    factors = factors_for(lay, values=(2.0, 0.0))
    with scale_heads(model, factors):
        by_hooks = logits(model, "llama", ids)
    with scale_heads(model, factors, fold=True):
        folded = logits(model, "llama", ids)
    assert folded.dtype == torch.bfloat16 and torch.equal(folded, by_hooks)
    assert all(torch.equal(w, b) for w, b in zip(weights(lay), before))


@torch.no_grad()
def test_weights_come_back_after_an_exception():
    model = tiny_model("gpt2")  # Conv1D: the weight is stored transposed
    lay = layout(model)
    before = weights(lay)
    with pytest.raises(RuntimeError, match="boom"):
        with scale_heads(model, factors_for(lay), fold=True):
            raise RuntimeError("boom")
    assert all(torch.equal(w, b) for w, b in zip(weights(lay), before))


@torch.no_grad()
def test_per_sample_factors_of_one_row_fold():
    model = tiny_model("llama")
    lay = layout(model)
    ids, _ = text_batch(2, 8)
    same = factors_for(lay).expand(2, *lay.shape)
    with scale_heads(model, same):
        by_hooks = logits(model, "llama", ids)
    with scale_heads(model, same, fold=True):
        assert not hooked(lay)
        folded = logits(model, "llama", ids)
    assert torch.equal(folded, by_hooks)


@torch.no_grad()
def test_a_capture_entered_before_sees_what_it_sees_under_the_hooks():
    model = tiny_model("llama")
    lay = layout(model)
    ids, _ = text_batch(2, 8)
    factors = factors_for(lay)
    seen = []
    for fold in (False, True):
        with capture_heads(model, layers=[0, 1]) as cap, scale_heads(model, factors, fold=fold):
            out = logits(model, "llama", ids)
        seen.append((out, cap.outputs[0], cap.outputs[1]))
    assert all(torch.equal(a, b) for a, b in zip(*seen))


@pytest.mark.parametrize("case", ["grad", "per-sample", "last-only", "peft", "autocast", "shared-outside",
                                  "factor-1.5", "factor-1.5-bf16"])
def test_hooks_run_where_folding_is_not_the_same_computation(case):
    """Each case gives the hooks' result, and the weights are never touched.

    factor-1.5: (W g) x and W (g x) round apart unless g is 0 or +-2^k (1.5 and 3 in bf16 move logits by ~2e-3).
    """
    model = tiny_model("llama", dtype=torch.bfloat16 if case.endswith("bf16") else torch.float32)
    ids, _ = text_batch(2, 8)
    lay = layout(model)
    factors = factors_for(lay)
    if case.startswith("factor-1.5"):
        factors = factors_for(lay, values=(1.5, 3.0, 2.0))
    if case == "per-sample":
        factors = torch.stack([factors, torch.ones(lay.shape)])
    if case == "peft":  # an adapter on the out-projection reads the unscaled input too
        peft = pytest.importorskip("peft")
        model = peft.get_peft_model(model, peft.LoraConfig(target_modules=["o_proj"], r=2, init_lora_weights=False))
        lay = layout(model)
    if case == "shared-outside":  # layer 1 uses layer 0's weight but gets no factors: folding would scale it too
        lay.out_projs[1].weight = lay.out_projs[0].weight
        factors[1:] = 1.0
    before = weights(lay)
    last_only = case == "last-only"
    # Autocast caches bf16 copies of weights that require grad for its whole region, so an in-place
    # scale would be missed by a copy made before (this forward) and outlive the fold in one made inside.
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "autocast")
    with torch.set_grad_enabled(case == "grad"), autocast:
        unscaled = logits(model, "llama", ids)
        with scale_heads(model, factors, last_only=last_only):
            by_hooks = logits(model, "llama", ids)
        with scale_heads(model, factors, last_only=last_only, fold=True):
            assert hooked(lay)
            assert all(torch.equal(w, b) for w, b in zip(weights(lay), before))
            result = logits(model, "llama", ids)
        assert torch.equal(logits(model, "llama", ids), unscaled)
    assert torch.equal(result, by_hooks)
    assert not torch.equal(result, unscaled)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@torch.no_grad()
def test_factors_on_the_gpu_fold():
    model = tiny_model("llama").cuda()
    lay = layout(model)
    ids, _ = text_batch(2, 8)
    factors = factors_for(lay).cuda()
    with scale_heads(model, factors):
        by_hooks = logits(model, "llama", ids.cuda())
    with scale_heads(model, factors, fold=True):
        assert not hooked(lay)
        folded = logits(model, "llama", ids.cuda())
    assert torch.equal(folded, by_hooks)
