import pytest
import torch

from headwise.heads import InvalidHeadsError, capture_heads, layout, scale_heads
from headwise.testing import FAMILIES, model_inputs, text_batch, tiny_model


def logits(model, family, ids, mask=None):
    with torch.no_grad():
        return model(**model_inputs(family, ids, mask)).logits


def greedy(model, family, ids, n=6, **kwargs):
    with torch.no_grad():
        return model.generate(**model_inputs(family, ids), max_new_tokens=n, do_sample=False, min_new_tokens=n,
                              pad_token_id=0, **kwargs)


@pytest.mark.parametrize("family", FAMILIES)
def test_factor_one_changes_nothing(family):
    model = tiny_model(family)
    lay = layout(model)
    ids, mask = text_batch(3, 10, left_pad=2)
    ref = logits(model, family, ids, mask)
    gen = greedy(model, family, ids[:1])
    ones = {layer: {head: 1.0 for head in range(lay.num_heads)} for layer in range(lay.num_layers)}
    for factors in (torch.ones(lay.shape), torch.ones(3, *lay.shape), ones):
        with scale_heads(model, factors):
            assert (logits(model, family, ids, mask) - ref).abs().max() <= 1e-6
    with scale_heads(model, torch.ones(lay.shape)):
        assert torch.equal(greedy(model, family, ids[:1]), gen)


@pytest.mark.parametrize("family", FAMILIES)
def test_ablation_equals_zeroed_out_projection_columns(family):
    model = tiny_model(family)
    lay = layout(model)
    ids, mask = text_batch(2, 10, left_pad=3)
    layer, head = 1, 2
    with scale_heads(model, {layer: {head: 0.0}}):
        ablated = logits(model, family, ids, mask)
    weight = lay.out_weight(layer)  # a view: writing it edits the module (Conv1D included)
    saved = weight.detach().clone()
    with torch.no_grad():
        weight[:, head * lay.head_dim:(head + 1) * lay.head_dim] = 0
    zeroed = logits(model, family, ids, mask)
    with torch.no_grad():
        weight.copy_(saved)
    assert (ablated - zeroed).abs().max() <= 1e-5
    assert (ablated - logits(model, family, ids, mask)).abs().max() > 1e-4  # the head mattered


@pytest.mark.parametrize("family", FAMILIES)
def test_captured_heads_recompose_the_out_projection(family):
    model = tiny_model(family)
    lay = layout(model)
    ids, mask = text_batch(2, 8, left_pad=2)
    seen = {}
    handle = lay.out_projs[1].register_forward_hook(lambda m, a, out: seen.setdefault("out", out))
    try:
        with capture_heads(model, layers=[1]) as cap:
            logits(model, family, ids, mask)
    finally:
        handle.remove()
    z = cap.outputs[1]
    assert z.shape == (2, ids.shape[1], lay.num_heads, lay.head_dim)
    weight = lay.out_weight(1)
    per_head = [z[..., h, :] @ weight[:, h * lay.head_dim:(h + 1) * lay.head_dim].T for h in range(lay.num_heads)]
    bias = getattr(getattr(lay.out_projs[1], "base_layer", lay.out_projs[1]), "bias", None)
    total = sum(per_head) + (0 if bias is None else bias)
    assert (total - seen["out"]).abs().max() <= 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_per_sample_factors_match_each_sample_alone(family):
    model = tiny_model(family)
    lay = layout(model)
    ids, mask = text_batch(3, 9, left_pad=2)
    g = torch.Generator().manual_seed(3)
    factors = torch.rand(3, *lay.shape, generator=g) * 2
    factors[1, 0, 1] = 0.0
    with scale_heads(model, factors):
        batched = logits(model, family, ids, mask)
    for i in range(3):
        with scale_heads(model, factors[i]):
            alone = logits(model, family, ids[i:i + 1], mask[i:i + 1])
        real = mask[i].bool()
        assert (batched[i, real] - alone[0, real]).abs().max() <= 1e-5


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2_vl", "gemma2", "llava"])
def test_scaling_inside_generate_matches_uncached_generation(family):
    model = tiny_model(family)
    ids, _ = text_batch(1, 6)
    factors = torch.rand(layout(model).shape, generator=torch.Generator().manual_seed(0)) * 4
    factors[0, 1] = 0.0

    def run(**kw):
        out = greedy(model, family, ids, n=8, output_logits=True, return_dict_in_generate=True, **kw)
        return out.sequences, torch.stack(out.logits)

    with scale_heads(model, factors):
        cached, cached_logits = run()
        uncached, uncached_logits = run(use_cache=False)
    assert torch.equal(cached, uncached)
    assert (cached_logits - uncached_logits).abs().max() <= 1e-5
    _, plain_logits = run()
    assert (cached_logits - plain_logits).abs().max() > 1e-3  # the intervention reached generate()


def test_per_sample_factors_follow_beams_and_return_sequences():
    model = tiny_model("llama")
    lay = layout(model)
    ids, _ = text_batch(2, 6)
    factors = torch.ones(2, *lay.shape)
    factors[1, 1] = 0.0
    with scale_heads(model, factors):
        beams = model.generate(input_ids=ids, max_new_tokens=4, num_beams=3, do_sample=False, pad_token_id=0)
        sampled = model.generate(input_ids=ids, max_new_tokens=4, do_sample=True, num_return_sequences=2,
                                 pad_token_id=0)
    assert beams.shape[0] == 2 and sampled.shape[0] == 4
    with scale_heads(model, factors[1]):
        alone = model.generate(input_ids=ids[1:], max_new_tokens=4, num_beams=3, do_sample=False, pad_token_id=0)
    assert torch.equal(beams[1], alone[0])


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_ablation_same_under_eager_and_sdpa(attn):
    ids, mask = text_batch(2, 8, left_pad=2)
    model = tiny_model("qwen2", attn_implementation=attn)
    ref = tiny_model("qwen2", attn_implementation="eager")
    with scale_heads(model, {0: {0: 0.0, 3: 2.0}}), scale_heads(ref, {0: {0: 0.0, 3: 2.0}}):
        a, b = logits(model, "qwen2", ids, mask), logits(ref, "qwen2", ids, mask)
    real = mask.bool()
    assert (a[real] - b[real]).abs().max() <= 1e-5


def test_bf16_factor_one_is_exact_and_ablation_matches_weights():
    model = tiny_model("llama", dtype=torch.bfloat16)
    lay = layout(model)
    ids, _ = text_batch(2, 8)
    ref = logits(model, "llama", ids)
    with scale_heads(model, torch.ones(2, *lay.shape)):
        assert torch.equal(logits(model, "llama", ids), ref)
    with scale_heads(model, {0: {1: 0.0}}):
        ablated = logits(model, "llama", ids)
    assert ablated.dtype == torch.bfloat16
    with torch.no_grad():
        lay.out_weight(0)[:, lay.head_dim:2 * lay.head_dim] = 0
    assert torch.equal(ablated, logits(model, "llama", ids))


def test_hooks_are_removed_after_an_exception():
    model = tiny_model("llama")
    lay = layout(model)
    with pytest.raises(RuntimeError, match="boom"):
        with scale_heads(model, {0: {0: 0.0}}), capture_heads(model):
            raise RuntimeError("boom")
    assert all(not proj._forward_pre_hooks for proj in lay.out_projs)


@pytest.mark.parametrize("factors, message", [
    ({5: {0: 0.0}}, "layer 5 is out of range"),
    ({0: {4: 0.0}}, "head 4 is out of range"),
    (torch.ones(3, 4), r"shape \[3, 4\]"),
    (torch.ones(2, 3, 4), r"shape \[2, 3, 4\]"),
    ({0: 0.5}, "mapping"),
])
def test_bad_factors_raise_clear_errors(factors, message):
    model = tiny_model("llama")
    with pytest.raises(InvalidHeadsError, match=message):
        with scale_heads(model, factors):
            pass


def test_per_sample_factors_for_the_wrong_batch():
    model = tiny_model("llama")
    ids, _ = text_batch(3, 5)
    with pytest.raises(InvalidHeadsError, match="batch of 2"):
        with scale_heads(model, torch.ones(2, *layout(model).shape) * 0.5):
            logits(model, "llama", ids)


def test_capture_history_and_last_only_during_generate():
    model = tiny_model("llama")
    ids, _ = text_batch(1, 5)
    with capture_heads(model, layers=[0], last_only=True, history=True) as cap:
        greedy(model, "llama", ids, n=3)
    shapes = [tuple(x.shape) for x in cap.history[0]]
    assert shapes == [(1, 1, 4, 8)] * 3
