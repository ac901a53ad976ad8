"""VHD, T-VHD, Eq. 6 and the layer-by-layer order of VHR, and one step of VCD and PAI, each against a computation
written here from the papers (He et al., ACL 2025, Eqs. 4-7 and Alg. 1; VCD, Leng et al. 2024; PAI, Liu et al.
2024) with plain forwards and plain hooks, not with the code's own helpers."""

import math

import pytest
import torch

from headwise.testing_vlm import test_image, tiny_vlm
from headwise.vhr import PAIConfig, VCDConfig, baselines, generate, lockstep, select_heads, token_score, token_vhd
from headwise.vhr.inputs import encode, to_device

PROMPT = "describe the image ."


def o_projs(model):
    return [layer.self_attn.o_proj for layer in model.get_decoder().layers]


def heads_at_last_position(model, inputs, forward=None, scale=None):
    """[layers, heads, head_dim]: every layer's out-projection input at the last position, split into heads.
    scale: {layer: [heads] factors} multiplied into that layer's out-projection input at every position."""
    mods = o_projs(model)
    n_heads = model.config.get_text_config().num_attention_heads
    seen, handles = {}, []

    def make(l):
        def hook(module, args):
            x = args[0]
            if scale and l in scale:
                x = (x.unflatten(-1, (n_heads, -1)) * scale[l][:, None]).flatten(-2)
            seen[l] = x[0, -1].unflatten(-1, (n_heads, -1)).float()
            return (x, *args[1:]) if scale and l in scale else None
        return hook

    handles = [m.register_forward_pre_hook(make(l)) for l, m in enumerate(mods)]
    try:
        with torch.no_grad():
            (forward or model)(**inputs)
    finally:
        for h in handles:
            h.remove()
    return torch.stack([seen[l] for l in range(len(mods))])


def two_streams(family, model, proc, img, caption=None):
    """The image row alone, and the image-free row alone (the prompt with the image removed), each followed by the
    caption tokens (teacher forcing); and the forward to run the image-free row through."""
    image = to_device(encode(model, proc, [img], [PROMPT]), model)
    paired = encode(model, proc, [img], [PROMPT], text_only=True)
    text_ids = paired["input_ids"][1:][paired["attention_mask"][1:].bool()].view(1, -1)
    text = {"input_ids": text_ids, "attention_mask": torch.ones_like(text_ids)}
    if caption is not None:
        tail = caption.view(1, -1)
        for batch in (image, text):
            length = batch["input_ids"].shape[1]
            for key in [k for k, v in batch.items() if torch.is_tensor(v) and v.shape == (1, length)]:
                fill = tail if key == "input_ids" else torch.ones_like(tail) if key == "attention_mask" \
                    else torch.zeros_like(tail)
                batch[key] = torch.cat([batch[key], fill.to(batch[key].dtype)], dim=1)
    forward = model.get_decoder() if family == "instructblip" else model  # no query tokens without an image
    return image, text, forward


def test_t_vhd_by_hand():
    # Eq. 5: per layer the sum of the k largest VHDs, summed over layers: (3 + 2) + (5 + 4) = 14 for k = 2.
    # A mean over all heads gives 2.5, the top-k of all layers pooled 9, the top-k of the first layer alone 5.
    assert token_score(torch.tensor([[3.0, 1.0, 2.0], [5.0, 0.0, 4.0]]), k=2).item() == 14.0


def test_vhd_and_t_vhd_at_a_later_step_match_two_teacher_forced_forwards(vlm):
    family, model, proc = vlm
    img = test_image(10)
    caption = generate(model, proc, [img], PROMPT, method="greedy", max_new_tokens=5).sequences[0]
    tv = token_vhd(model, proc, img, PROMPT, caption, k=2)
    for step in (0, 3):  # the first token, and the fourth, which sees three generated tokens
        image, text, forward = two_streams(family, model, proc, img, caption[:step])
        a = heads_at_last_position(model, image)
        b = heads_at_last_position(model, text, forward)
        vhd = (a - b).norm(dim=-1)  # Eq. 4: L2 distance of each head's output with and without the image
        assert (tv["vhd"][step] - vhd).abs().max() <= 1e-4
        top2 = vhd.sort(dim=-1, descending=True).values[:, :2].sum().item()
        assert tv["t_vhd"][step] == pytest.approx(top2, rel=1e-4, abs=1e-5)
    assert tv["vhd"][3].max() > 0


def test_eq6_takes_the_squared_norm_of_the_image_free_output():
    # Heads 5 and 6 are VHD outliers. Their image-free norms are 1.6 and 2.0 among six 1.0s: as plain norms both
    # exceed mean + std (1.56); as squared norms (the paper's TA) only head 6 does (mean + std = 2.62).
    vhd = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.25, 5.0, 5.0, 0.15]])
    text = torch.zeros(1, 8, 2)
    text[0, :, 0] = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.6, 2.0, 1.0])
    # TA squared: head 6 zeroed; lower median of [.1 .2 .3 .4 .25 5 0 .15] is 0.2 -> heads 2, 3, 4, 5.
    # TA plain: heads 5 and 6 zeroed; lower median 0.15 -> heads 1, 2, 3, 4.
    assert select_heads(vhd, text)[0].nonzero().flatten().tolist() == [2, 3, 4, 5]


def test_vhr_measures_each_layer_after_reinforcing_the_ones_below():
    """Alg. 1: layer l's VHD is measured on states that already carry the reinforcement of layers < l, in both
    streams (the reading of vhr.md section 2.3). The oracle reruns the two streams once per layer with plain hooks
    scaling the heads chosen so far; a two-pass VHD (nothing reinforced) differs at layer 1."""
    model, proc = tiny_vlm("llava")
    img, alpha = test_image(2), 2.0
    image, text, forward = two_streams("llava", model, proc, img)
    n_layers = len(o_projs(model))
    scale, vhd, chosen = {}, [], []
    for l in range(n_layers):
        a = heads_at_last_position(model, image, scale=scale)[l]
        b = heads_at_last_position(model, text, forward, scale=scale)[l]
        v = (a - b).norm(dim=-1)
        ta = b.pow(2).sum(-1)  # Eq. 6, population std
        out = (v > v.mean() + v.std(unbiased=False)) & (ta > ta.mean() + ta.std(unbiased=False))
        v0 = v.masked_fill(out, 0.0)
        pick = v0 > v0.sort().values[(len(v0) - 1) // 2]  # Eq. 7: strictly above the lower median
        vhd.append(v)
        chosen.append(pick)
        scale[l] = torch.where(pick, alpha, 1.0)
    two_pass = (heads_at_last_position(model, image) - heads_at_last_position(model, text, forward)).norm(dim=-1)
    assert chosen[0].any() and (two_pass[1] - vhd[1]).abs().max() > 1e-2  # the order matters on this input

    paired = to_device(encode(model, proc, [img], [PROMPT], text_only=True), model)
    found = lockstep(model, paired, 1, layers=list(range(n_layers)), alpha=alpha)
    assert (found.vhd[0] - torch.stack(vhd)).abs().max() <= 1e-4
    assert torch.equal(found.chosen[0], torch.stack(chosen))


def first_step_combined(monkeypatch, run):
    """The logits the paired-rows processor combines at the first step: (main, contrast, combined)."""
    seen = []
    original = baselines.PairedRows.__call__

    def spy(self, input_ids, scores):
        if not seen:
            main, contrast = scores[: self.n].float(), scores[self.n:].float()
            seen.append((main, contrast, self.combine(main, contrast)))
        return original(self, input_ids, scores)

    monkeypatch.setattr(baselines.PairedRows, "__call__", spy)
    run()
    return seen[0]


def peaked_llava():
    model, proc = tiny_vlm("llava")
    with torch.no_grad():
        model.lm_head.weight.mul_(40)  # the random model's next-token distribution is nearly flat: no cut-off bites
    return model, proc


def assert_same_logits(got, expected):
    assert torch.equal(torch.isinf(got), torch.isinf(expected)) and 0 < torch.isinf(expected).sum() < len(expected) - 1
    finite = ~torch.isinf(expected)
    assert (got[finite] - expected[finite]).abs().max() <= 1e-4


def test_vcd_first_step_by_hand(monkeypatch):
    # VCD: (1 + a) l - a l' with l' the logits under the noised image, kept only where p >= beta * p_max.
    model, proc = peaked_llava()
    img, a, beta = test_image(3), 0.7, 0.02
    main, contrast, combined = first_step_combined(monkeypatch, lambda: generate(
        model, proc, [img], PROMPT, VCDConfig(cd_alpha=a, cd_beta=beta), max_new_tokens=1))
    inputs = to_device(encode(model, proc, [img], [PROMPT]), model)
    with torch.no_grad():
        l = model(**inputs).logits[0, -1].float()
        noised = dict(inputs, pixel_values=baselines.diffusion_noise(inputs["pixel_values"], 500))
        l_noised = model(**noised).logits[0, -1].float()
    assert (main[0] - l).abs().max() <= 1e-4 and (contrast[0] - l_noised).abs().max() <= 1e-4
    p = l.softmax(-1)
    expected = ((1 + a) * l - a * l_noised).masked_fill(p < beta * p.max(), -math.inf)
    assert_same_logits(combined[0], expected)


def boosted_llama_attention(attn, hidden, cos_sin, image_keys, alpha):
    """Eager Llama attention (one unpadded row) with PAI's edit: the last query's pre-softmax scores on image keys
    become s + alpha |s|."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    B, T, _ = hidden.shape
    d = attn.head_dim
    q = attn.q_proj(hidden).view(B, T, -1, d).transpose(1, 2)
    k = attn.k_proj(hidden).view(B, T, -1, d).transpose(1, 2)
    v = attn.v_proj(hidden).view(B, T, -1, d).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, *cos_sin)
    k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))
    s = q @ k.transpose(-1, -2) / math.sqrt(d)
    last = s[:, :, -1, image_keys]
    s[:, :, -1, image_keys] = last + alpha * last.abs()
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), -math.inf)
    out = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, -1)
    return attn.o_proj(out)


def test_pai_first_step_by_hand(monkeypatch):
    # PAI: in the chosen layers the last query's scores on image keys get + a |s|; then
    # g (log p - log p_text) + log p_text, kept only where p >= 0.1 p_max.
    model, proc = peaked_llava()
    img, a, g = test_image(4), 0.5, 1.5
    main, contrast, combined = first_step_combined(monkeypatch, lambda: generate(
        model, proc, [img], PROMPT, PAIConfig(pai_alpha=a, pai_gamma=g, pai_layers=(0, 2)), max_new_tokens=1))
    image, text, _ = two_streams("llava", model, proc, img)
    image_keys = (image["input_ids"][0] == model.config.image_token_id).nonzero().flatten()

    def boost(module, args, kwargs, output):
        return (boosted_llama_attention(module, kwargs["hidden_states"], kwargs["position_embeddings"], image_keys, a),
                *output[1:])

    handles = [layer.self_attn.register_forward_hook(boost, with_kwargs=True) for layer in model.get_decoder().layers]
    try:
        with torch.no_grad():
            l = model(**image).logits[0, -1].float()
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        l_text = model(**text).logits[0, -1].float()
        plain = model(**image).logits[0, -1].float()
    assert (plain - l).abs().max() > 1e-3  # the boost changes the first step
    assert (main[0] - l).abs().max() <= 1e-4 and (contrast[0] - l_text).abs().max() <= 1e-4
    logp, logq = l.log_softmax(-1), l_text.log_softmax(-1)
    expected = (g * (logp - logq) + logq).masked_fill(logp.exp() < 0.1 * logp.exp().max(), -math.inf)
    assert_same_logits(combined[0], expected)
