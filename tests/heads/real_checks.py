"""The head-access invariants of the tiny-model tests, as checks that run on any real model (test_smollm2.py,
test_gemma3.py). Each takes the model and an encoded batch, so a test picks the heads and lengths that matter
for its model."""

import torch

from headwise.heads import attention_maps, layout, scale_heads


def left_padded(tok, prompts):
    tok.padding_side = "left"
    return tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)


def greedy(model, enc, n=8, **kwargs):
    out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False, output_logits=True,
                         return_dict_in_generate=True, pad_token_id=model.config.pad_token_id, **kwargs)
    return out.sequences, torch.stack(out.logits)


@torch.no_grad()
def check_factor_one(model, enc):
    """Factor 1 on every head leaves the logits bit for bit and greedy generation token for token."""
    ones = torch.ones(layout(model).shape)
    ref = model(**enc).logits
    with scale_heads(model, ones):
        assert torch.equal(model(**enc).logits, ref)
        steered, _ = greedy(model, enc)
    assert torch.equal(steered, greedy(model, enc)[0])


@torch.no_grad()
def check_ablation_is_zeroed_columns(model, enc, layer, head, tol=1e-4):
    """Ablating a head equals zeroing its input columns of the out-projection, and the head matters."""
    lay = layout(model)
    ref = model(**enc).logits
    with scale_heads(model, {layer: {head: 0.0}}):
        ablated = model(**enc).logits
    cols = slice(head * lay.head_dim, (head + 1) * lay.head_dim)
    weight = lay.out_weight(layer)
    saved = weight[:, cols].clone()
    weight[:, cols] = 0
    try:
        zeroed = model(**enc).logits
    finally:
        weight[:, cols] = saved
    assert (ablated - zeroed).abs().max() <= tol
    assert (ablated - ref).abs().max() > 1e-3


@torch.no_grad()
def check_maps_match_eager(model, enc, heads, tol=1e-5) -> dict[int, torch.Tensor]:
    """`attention_maps` on the sdpa backend equals eager `output_attentions` on the real (unpadded) query rows;
    returns the maps."""
    with attention_maps(model, heads) as maps:
        model(**enc, logits_to_keep=1)
    model.set_attn_implementation("eager")
    try:
        ref = model(**enc, output_attentions=True, logits_to_keep=1).attentions
    finally:
        model.set_attn_implementation("sdpa")
    real = enc["attention_mask"].bool()[:, None, :, None]
    for layer, hs in maps.heads.items():
        assert ((maps.maps[layer] - ref[layer][:, hs]).abs() * real).max() <= tol, f"layer {layer}"
    return maps.maps


@torch.no_grad()
def check_cached_steering(model, enc, factors, n=8, tol=1e-4):
    """Steering inside cached generate() equals uncached generation, and the steering changed the output."""
    with scale_heads(model, factors):
        cached, cached_logits = greedy(model, enc, n)
        uncached, uncached_logits = greedy(model, enc, n, use_cache=False)
    assert torch.equal(cached, uncached)
    assert (cached_logits - uncached_logits).abs().max() <= tol
    assert (cached_logits - greedy(model, enc, n)[1]).abs().max() > 1e-3
