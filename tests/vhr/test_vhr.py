import pytest
import torch

from headwise.errors import HeadwiseError
from headwise.heads import capture_heads, layout, scale_heads
from headwise.testing_vlm import test_image, tiny_vlm
from headwise.vhr import (METHODS, PAIConfig, VCDConfig, VHRConfig, generate, head_divergence, lockstep,
                          select_heads, token_score, token_vhd)
from headwise.vhr.heads import default_layers
from headwise.vhr.inputs import encode, to_device

PROMPT = "describe the image ."


def test_alpha_one_reproduces_greedy(vlm):
    _, model, proc = vlm
    img = test_image(0)
    greedy = generate(model, proc, [img], PROMPT, method="greedy", max_new_tokens=8)
    vhr = generate(model, proc, [img], PROMPT, VHRConfig(alpha=1.0, layers=[0, 1]), max_new_tokens=8)
    assert torch.equal(greedy.sequences, vhr.sequences) and greedy.texts == vhr.texts
    assert vhr.heads.any()  # heads were chosen; alpha 1 just leaves them as they are


def test_lockstep_image_row_equals_a_single_row_run(vlm):
    _, model, proc = vlm
    img = test_image(1)
    paired = to_device(encode(model, proc, [img], [PROMPT], text_only=True), model)
    alone = to_device(encode(model, proc, [img], [PROMPT]), model)
    lay = layout(model)
    with torch.no_grad(), capture_heads(model, last_only=True) as cap:
        model(**paired)
        both = {l: v.clone() for l, v in cap.outputs.items()}
        logits_pair = model(**paired).logits[0, -1]
        logits_alone = model(**alone).logits[0, -1]
        single = {l: v.clone() for l, v in cap.outputs.items()}
    assert (logits_pair - logits_alone).abs().max() <= 1e-4
    for layer in range(lay.num_layers):
        assert (both[layer][0] - single[layer][0]).abs().max() <= 1e-4


def test_alpha_one_lockstep_vhd_equals_two_independent_passes(vlm):
    family, model, proc = vlm
    img = test_image(2)
    vhd = head_divergence(model, proc, img, PROMPT)
    paired = encode(model, proc, [img], [PROMPT], text_only=True)
    with_image = to_device(encode(model, proc, [img], [PROMPT]), model)
    text_ids = paired["input_ids"][1:][paired["attention_mask"][1:].bool()].view(1, -1)
    without = {"input_ids": text_ids, "attention_mask": torch.ones_like(text_ids)}
    if family == "instructblip":
        without = {"input_ids": text_ids, "attention_mask": torch.ones_like(text_ids)}
    outs = []
    with torch.no_grad():
        for inputs in (with_image, without):
            with capture_heads(model, last_only=True) as cap:
                (model.get_decoder() if family == "instructblip" and inputs is without else model)(**inputs)
            outs.append(torch.stack([cap.outputs[l][0, -1] for l in range(layout(model).num_layers)]))
    assert (vhd - (outs[0] - outs[1]).norm(dim=-1)).abs().max() <= 1e-4  # Eq. 4 written out, not `divergence`
    assert vhd.max() > 0


def test_identical_inputs_give_zero_vhd_and_choose_nothing(vlm):
    _, model, proc = vlm
    img = test_image(3)
    batch = to_device(encode(model, proc, [img, img], [PROMPT, PROMPT]), model)  # "image-free" row = the image row
    found = lockstep(model, batch, 1, layers=[0, 1], alpha=2.0)
    assert found.vhd.abs().max() == 0 and not found.chosen.any()


def test_each_sample_in_a_batch_gets_its_own_heads_and_text(vlm):
    _, model, proc = vlm
    imgs = [test_image(4), test_image(5, size=(24, 40)), test_image(6)]
    prompts = [PROMPT, "what is in the picture ?", PROMPT]
    batch = generate(model, proc, imgs, prompts, VHRConfig(alpha=3.0, layers=[0, 1]), max_new_tokens=6)
    for i in range(3):
        alone = generate(model, proc, [imgs[i]], [prompts[i]], VHRConfig(alpha=3.0, layers=[0, 1]),
                         max_new_tokens=6)
        assert torch.equal(batch.heads[i], alone.heads[0])
        assert batch.texts[i] == alone.texts[0]


def test_heads_stay_fixed_while_decoding(vlm):
    family, model, proc = vlm
    img = test_image(7)
    out = generate(model, proc, [img], PROMPT, VHRConfig(alpha=3.0, layers=[0, 1]), max_new_tokens=8)
    factors = torch.where(out.heads, 3.0, 1.0)
    inputs = to_device(encode(model, proc, [img], [PROMPT]), model)
    with scale_heads(model, factors), torch.no_grad():
        cached = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        uncached = model.generate(**inputs, max_new_tokens=8, do_sample=False, use_cache=False)
    new = inputs["input_ids"].shape[1]
    assert torch.equal(cached[:, new:], out.sequences) and torch.equal(uncached, cached)


def test_vhr_works_with_sampling_and_beams():
    model, proc = tiny_vlm("llava")
    imgs = [test_image(0), test_image(1)]
    beams = generate(model, proc, imgs, PROMPT, method="vhr", max_new_tokens=4, num_beams=3)
    sampled = generate(model, proc, imgs, PROMPT, method="vhr", max_new_tokens=4, do_sample=True,
                       num_return_sequences=2)
    assert len(beams.texts) == 2 and len(sampled.texts) == 4


@pytest.mark.parametrize("method", ["vcd", "pai"])
def test_baselines_run_and_differ_from_greedy(vlm, method):
    _, model, proc = vlm
    img = test_image(8)
    out = generate(model, proc, [img, test_image(9)], PROMPT, method=method, max_new_tokens=6)
    assert len(out.texts) == 2 and out.sequences.shape[0] == 2


def test_vcd_with_alpha_zero_is_greedy_and_sampling_is_seeded():
    model, proc = tiny_vlm("llava")
    img = test_image(0)
    greedy = generate(model, proc, [img], PROMPT, method="greedy", max_new_tokens=6)
    vcd0 = generate(model, proc, [img], PROMPT, VCDConfig(cd_alpha=0.0, cd_beta=1e-9), max_new_tokens=6)
    assert torch.equal(greedy.sequences, vcd0.sequences)
    a = generate(model, proc, [img], PROMPT, method="vcd", do_sample=True, seed=3, max_new_tokens=6)
    b = generate(model, proc, [img], PROMPT, method="vcd", do_sample=True, seed=3, max_new_tokens=6)
    assert torch.equal(a.sequences, b.sequences)


def test_pai_without_boost_or_guidance_is_greedy():
    model, proc = tiny_vlm("qwen2_vl")
    img = test_image(0)
    greedy = generate(model, proc, [img], PROMPT, method="greedy", max_new_tokens=6)
    pai = generate(model, proc, [img], PROMPT, PAIConfig(pai_alpha=0.0, pai_gamma=1.0), max_new_tokens=6)
    assert torch.equal(greedy.sequences, pai.sequences)


def test_token_vhd_first_token_matches_head_divergence(vlm):
    _, model, proc = vlm
    img = test_image(10)
    out = generate(model, proc, [img], PROMPT, method="greedy", max_new_tokens=5)
    tv = token_vhd(model, proc, img, PROMPT, out.sequences[0], k=2)
    assert len(tv["t_vhd"]) == len(tv["tokens"]) == out.sequences.shape[1]
    first = token_score(head_divergence(model, proc, img, PROMPT), k=2).item()
    assert tv["t_vhd"][0] == pytest.approx(first, rel=1e-4, abs=1e-5)


def test_select_heads_rules():
    vhd = torch.tensor([[0.1, 0.2, 0.3, 0.4, 5.0, 0.25]])
    text = torch.ones(1, 6, 2)
    assert select_heads(vhd, text).tolist() == [[False, False, True, True, True, False]]
    text[0, 4] = 10.0  # head 4 is an outlier in both VHD and text-only norm: Eq. 6 zeroes it
    # then the lower median of [0.1, 0.2, 0.3, 0.4, 0, 0.25] is 0.2: heads 2, 3 and 5 are above it
    assert select_heads(vhd, text).tolist() == [[False, False, True, True, False, True]]
    assert select_heads(vhd, text, outlier_rule=False)[0, 4]
    assert not select_heads(torch.zeros(2, 6), text.expand(2, -1, -1)).any()
    assert default_layers(32) == [1, *range(18, 32)] and default_layers(30) == [1, *range(17, 30)]


def test_bad_input():
    model, proc = tiny_vlm("llava")
    img = test_image(0)
    with pytest.raises(HeadwiseError, match="alpha must be > 0"):
        generate(model, proc, [img], PROMPT, VHRConfig(alpha=0.0))
    with pytest.raises(HeadwiseError, match="layer 7 is out of range"):
        generate(model, proc, [img], PROMPT, VHRConfig(layers=[7]))
    with pytest.raises(HeadwiseError, match="unknown method"):
        generate(model, proc, [img], PROMPT, method="opera")
    with pytest.raises(HeadwiseError, match="2 prompts"):
        generate(model, proc, [img], [PROMPT, PROMPT])
    from headwise.testing import tiny_model
    with pytest.raises(HeadwiseError, match="no image token"):
        generate(tiny_model("llama"), proc, [img], PROMPT)
    assert set(METHODS) == {"greedy", "vhr", "vcd", "pai"}


def test_template_that_keeps_the_image_is_refused():
    model, proc = tiny_vlm("llava")
    proc.chat_template = "USER: <image>\n{{ messages[0]['content'][-1]['text'] }} ASSISTANT:"
    with pytest.raises(HeadwiseError, match="cannot be stripped of its image"):
        generate(model, proc, [test_image(0)], PROMPT, method="vhr")
