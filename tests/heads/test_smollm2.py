"""The head-access invariants on the real SmolLM2-135M-Instruct (30 layers, 9 query heads, 3 KV heads)."""

import torch

from headwise.heads import attention_maps, layout, scale_heads

PROMPTS = ["The Eiffel Tower is in", "Photosynthesis converts light energy into chemical energy stored in"]


def batch(tok):
    tok.padding_side = "left"
    return tok(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)


def test_layout(smollm2):
    lay = layout(smollm2.model)
    assert (lay.num_layers, lay.num_heads, lay.num_kv_heads, lay.head_dim) == (30, 9, 3, 64)


@torch.no_grad()
def test_factor_one_and_ablation(smollm2):
    model, tok = smollm2
    lay = layout(model)
    enc = batch(tok)
    ref = model(**enc).logits
    with scale_heads(model, torch.ones(lay.shape)):
        assert (model(**enc).logits - ref).abs().max() <= 1e-6
        gen = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert torch.equal(gen, model.generate(**enc, max_new_tokens=8, do_sample=False))
    with scale_heads(model, {3: {4: 0.0}}):
        ablated = model(**enc).logits
    w = lay.out_weight(3)
    saved = w[:, 256:320].clone()
    w[:, 256:320] = 0
    try:
        zeroed = model(**enc).logits
    finally:
        w[:, 256:320] = saved
    assert (ablated - zeroed).abs().max() <= 1e-4
    assert (ablated - ref).abs().max() > 1e-3


@torch.no_grad()
def test_maps_match_eager(smollm2):
    model, tok = smollm2
    enc = batch(tok)
    heads = {0: [0, 4, 8], 17: [2], 29: None}
    with attention_maps(model, heads) as maps:
        model(**enc)
    model.set_attn_implementation("eager")
    try:
        ref = model(**enc, output_attentions=True).attentions
    finally:
        model.set_attn_implementation("sdpa")
    real = enc.attention_mask.bool()[:, None, :, None]
    for layer, hs in maps.heads.items():
        assert ((maps.maps[layer] - ref[layer][:, hs]).abs() * real).max() <= 1e-5
