"""Issue 14, section 4: the bf16 divergence floor, prompts without a chat template, one prefill."""

import pytest
import torch

from headwise.heads import layout, out_proj_pre_hooks, split_heads
from headwise.testing_vlm import VLM_FAMILIES, TOKEN_ID, test_image, tiny_vlm
from headwise.vhr import VHRConfig, generate, head_divergence
from headwise.vhr.heads import divergence
from headwise.vhr.inputs import encode, to_device

PROMPT = "describe the image ."


def relative_vhd(model, processor, image, prompt: str) -> torch.Tensor:
    """VHD / the larger head norm [layers, heads] at the first step, with no noise floor at all."""
    lay = layout(model)
    batch = to_device(encode(model, processor, [image], [prompt], text_only=True), model)
    out = {}

    def make(layer):
        def hook(module, args):
            heads = split_heads(args[0][:, -1], lay.num_heads).float()
            norm = torch.maximum(heads[0].norm(dim=-1), heads[1].norm(dim=-1))
            out[layer] = (heads[0] - heads[1]).norm(dim=-1) / norm
        return hook

    with torch.no_grad(), out_proj_pre_hooks(lay, {layer: make(layer) for layer in range(lay.num_layers)}):
        model(**batch, use_cache=False)
    return torch.stack([out[layer] for layer in range(lay.num_layers)])


def assert_bf16_keeps_real_divergences(model, processor, image, prompt):
    rel32 = relative_vhd(model, processor, image, prompt)
    model.to(torch.bfloat16)
    vhd16 = head_divergence(model, processor, image, prompt)
    lost = (vhd16 == 0) & (rel32 > 0.05)
    assert not lost.any(), f"{int(lost.sum())} heads with fp32 VHD above 5% of their norm are 0 in bf16"
    return rel32, vhd16


def test_floor_is_a_few_ulps_not_a_share_of_the_norm():
    a = torch.ones(2, 64)
    b = a.clone()
    b[:, :8] -= 0.25  # a difference of 0.25 * sqrt(8) / 8 = 8.8% of the norm
    # 16 bf16 ulps (12.5% of the norm) would zero this; a rounding-noise floor must keep it
    assert (divergence(a.bfloat16(), b.bfloat16()) > 0).all()
    c = a.clone()
    c[:, 0] += torch.finfo(torch.bfloat16).eps  # one ulp on one element: noise
    assert (divergence(a.bfloat16(), c.bfloat16()) == 0).all()
    assert (divergence(a, c) > 0).all()  # in float32 the same step is far above the floor


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_bf16_keeps_every_head_above_five_percent_on_tiny_models(family):
    model, proc = tiny_vlm(family)
    assert_bf16_keeps_real_divergences(model, proc, test_image(2), PROMPT)


def test_bf16_keeps_every_head_above_five_percent_on_emoji_llava(smollm2):
    from headwise.models import load_model
    from headwise.testbed.scenes import render, sample_scene

    model, proc = load_model("emoji-llava", device="cpu")
    rel32, vhd16 = assert_bf16_keeps_real_divergences(model, proc, render(sample_scene(0, 0)),
                                                      "Please describe this image in detail.")
    assert int((rel32 > 0.05).sum()) > 150  # most of the 270 heads diverge by more than 5%: the test has teeth


def test_prompt_without_a_chat_template_drops_the_image_token_and_its_newline():
    model, proc = tiny_vlm("llava")
    proc.chat_template = None
    prompt = "USER: <image>\ndescribe the image . ASSISTANT:"
    batch = encode(model, proc, [test_image(0)], [prompt], text_only=True)
    twin = batch["input_ids"][1][batch["attention_mask"][1].bool()]
    want = proc.tokenizer("USER: describe the image . ASSISTANT:", return_tensors="pt")["input_ids"][0]
    assert torch.equal(twin, want)
    image_row = batch["input_ids"][0]
    assert int((image_row == TOKEN_ID["<image>"]).sum()) == 16
    out = generate(model, proc, [test_image(0)], prompt, method="vhr", max_new_tokens=4)
    assert out.heads.any() and len(out.texts) == 1
    greedy = generate(model, proc, [test_image(0)], prompt, method="greedy", max_new_tokens=6)
    same = generate(model, proc, [test_image(0)], prompt, VHRConfig(alpha=1.0), max_new_tokens=6)
    assert torch.equal(greedy.sequences, same.sequences)


def count_prefills(model):
    """A hook counting decoder forwards over more than one position (prefills); returns (calls, handle)."""
    calls = []

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        calls.append(hidden.shape[1] > 1)

    return calls, model.get_decoder().layers[0].register_forward_pre_hook(hook, with_kwargs=True)


# InstructBLIP has its own generate(), which rebuilds the prompt from the pixels: no cache can be carried in.
PREFILLS = {family: 2 if family == "instructblip" else 1 for family in VLM_FAMILIES}


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_image_rows_are_prefilled_once_where_the_cache_can_be_carried(family, monkeypatch):
    model, proc = tiny_vlm(family)
    img = test_image(5)
    calls, handle = count_prefills(model)
    try:
        carried = generate(model, proc, [img], PROMPT, VHRConfig(alpha=3.0, layers=[0, 1]), max_new_tokens=8)
        assert sum(calls) == PREFILLS[family]
        # the carried cache is the one a second prefill recomputes: same heads, same tokens
        monkeypatch.setattr("headwise.vhr.core.carry_positions", lambda *a, **k: None)
        calls.clear()
        twice = generate(model, proc, [img], PROMPT, VHRConfig(alpha=3.0, layers=[0, 1]), max_new_tokens=8)
        assert sum(calls) == 2
    finally:
        handle.remove()
    assert torch.equal(carried.heads, twice.heads)
    assert torch.equal(carried.sequences, twice.sequences)


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_padded_image_rows_carry_the_cache_too(family, monkeypatch):
    model, proc = tiny_vlm(family)
    imgs, prompts = [test_image(6), test_image(7)], [PROMPT, "what is in the picture ? give a detail"]
    calls, handle = count_prefills(model)
    try:
        carried = generate(model, proc, imgs, prompts, VHRConfig(alpha=3.0, layers=[0, 1]), max_new_tokens=6)
        assert sum(calls) == PREFILLS[family]
        monkeypatch.setattr("headwise.vhr.core.carry_positions", lambda *a, **k: None)
        twice = generate(model, proc, imgs, prompts, VHRConfig(alpha=3.0, layers=[0, 1]), max_new_tokens=6)
    finally:
        handle.remove()
    assert torch.equal(carried.heads, twice.heads) and carried.texts == twice.texts


def test_double_prefill_remains_for_beams_and_return_sequences():
    model, proc = tiny_vlm("llava")
    calls, handle = count_prefills(model)
    try:
        generate(model, proc, [test_image(0)], PROMPT, method="vhr", max_new_tokens=3, num_beams=2)
        beams = sum(calls)
        calls.clear()
        generate(model, proc, [test_image(0)], PROMPT, method="vhr", max_new_tokens=3, do_sample=True,
                 num_return_sequences=2)
        sampled = sum(calls)
    finally:
        handle.remove()
    assert (beams, sampled) == (2, 2)


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_decoding_folds_the_heads_into_the_weights_with_the_hooks_result(family, monkeypatch):
    """One image, all positions: the decode steps run no hook, and the tokens and weights are those of the hooks."""
    import headwise.heads.hooks as hooks

    model, proc = tiny_vlm(family)
    img = test_image(4)
    lay = layout(model)
    before = [lay.out_weight(layer).clone() for layer in range(lay.num_layers)]
    folds = []
    real_folded = hooks._folded
    monkeypatch.setattr(hooks, "_folded", lambda lay, plan: folds.append(plan) or real_folded(lay, plan))
    folded = generate(model, proc, [img], PROMPT, VHRConfig(alpha=2.0, layers=[0, 1]), max_new_tokens=8)
    assert len(folds) == 1 and folded.heads.any()
    real_scale = hooks.scale_heads
    monkeypatch.setattr("headwise.vhr.core.scale_heads", lambda *a, **k: real_scale(*a, **k | {"fold": False}))
    by_hooks = generate(model, proc, [img], PROMPT, VHRConfig(alpha=2.0, layers=[0, 1]), max_new_tokens=8)
    assert len(folds) == 1
    assert torch.equal(folded.heads, by_hooks.heads) and torch.equal(folded.sequences, by_hooks.sequences)
    assert all(torch.equal(lay.out_weight(layer), b) for layer, b in enumerate(before))
