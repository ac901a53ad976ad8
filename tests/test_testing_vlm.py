"""The tiny VLM + real processor builders in headwise.testing_vlm."""


import pytest
import torch
import transformers as tf

from headwise.testing_vlm import (
    VLM_FAMILIES,
    chat,
    image_token_id,
    images_arg,
    load_tiny_vlm,
    mixed_batch,
    save_tiny_vlm,
    test_image,
    tiny_vlm,
)

PROMPT = "Describe the image."
# Placeholder tokens the processor inserts for one 32x32 test image (= features the tower yields).
IMAGE_TOKENS = {"llava": 16, "llava_next": 88, "qwen2_vl": 16, "qwen2_5_vl": 16, "idefics3": 16,
                "smolvlm": 16, "instructblip": 8}
# What the rendered prompt ends with (the generation prompt of each family's template).
GENERATION_PROMPT = {"llava": "ASSISTANT:", "llava_next": "[/INST]", "qwen2_vl": "<|im_start|>assistant\n",
                     "qwen2_5_vl": "<|im_start|>assistant\n", "idefics3": "Assistant:", "smolvlm": "Assistant:",
                     "instructblip": PROMPT}
AUTO_PROCESSOR_NEEDS_TORCHVISION = {"qwen2_vl", "qwen2_5_vl", "smolvlm"}
MODEL_CLASS = {"llava": tf.LlavaForConditionalGeneration, "llava_next": tf.LlavaNextForConditionalGeneration,
               "qwen2_vl": tf.Qwen2VLForConditionalGeneration, "qwen2_5_vl": tf.Qwen2_5_VLForConditionalGeneration,
               "idefics3": tf.Idefics3ForConditionalGeneration, "smolvlm": tf.SmolVLMForConditionalGeneration,
               "instructblip": tf.InstructBlipForConditionalGeneration}
# The real transformers processor class (qwen2_vl, qwen2_5_vl and smolvlm get a subclass without
# the torchvision-only video processor).
PROCESSOR_CLASS = {"llava": tf.LlavaProcessor, "llava_next": tf.LlavaNextProcessor, "qwen2_vl": tf.Qwen2VLProcessor,
                   "qwen2_5_vl": tf.Qwen2_5_VLProcessor, "idefics3": tf.Idefics3Processor,
                   "smolvlm": tf.SmolVLMProcessor, "instructblip": tf.InstructBlipProcessor}


def _last_logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits[:, -1]


def _n_image_tokens(model, ids):
    return int((ids == image_token_id(model)).sum())


def test_families():
    assert VLM_FAMILIES == ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "instructblip")
    with pytest.raises(KeyError):
        tiny_vlm("no_such_family")


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_tiny_vlm_shape(family):
    model, processor = tiny_vlm(family)
    assert type(model) is MODEL_CLASS[family] and isinstance(processor, PROCESSOR_CLASS[family])
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    tokenizer = processor.tokenizer
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    image_token = processor.image_token if isinstance(processor.image_token, str) else processor.image_token.content
    assert image_token_id(model) == tokenizer.convert_tokens_to_ids(image_token)
    # Same seed, same weights; another seed, other weights.
    again, _ = tiny_vlm(family)
    other, _ = tiny_vlm(family, seed=1)
    weight = model.get_input_embeddings().weight
    assert torch.equal(weight, again.get_input_embeddings().weight)
    assert not torch.equal(weight, other.get_input_embeddings().weight)


def test_test_image_is_deterministic():
    img = test_image()
    assert img.mode == "RGB" and img.size == (32, 32)
    assert img.tobytes() == test_image().tobytes()
    assert img.tobytes() != test_image(seed=1).tobytes()
    assert test_image(size=(48, 24)).size == (48, 24)


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_chat_template(family):
    _, processor = tiny_vlm(family)
    with_image, without = chat(processor, PROMPT, True), chat(processor, PROMPT, False)
    assert with_image.endswith(GENERATION_PROMPT[family]) and without.endswith(GENERATION_PROMPT[family])
    assert PROMPT in with_image and PROMPT in without
    if family == "instructblip":  # the processor, not the text, places InstructBLIP's image tokens
        assert with_image == without == PROMPT
    else:
        assert with_image.count(processor.image_token) == 1
        assert processor.image_token not in without
    # The shared vocabulary covers every word of every template: no <unk>.
    ids = processor.tokenizer(with_image + " " + without)["input_ids"]
    assert processor.tokenizer.unk_token_id not in ids


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_image_prompt_forward_and_generate(family):
    model, processor = tiny_vlm(family)
    inputs = processor(text=[chat(processor, PROMPT, True)], images=images_arg(family, [[test_image()]]),
                       return_tensors="pt")
    assert _n_image_tokens(model, inputs["input_ids"]) == IMAGE_TOKENS[family]
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(processor.tokenizer))
    assert torch.isfinite(logits).all()
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 1 and out.shape[1] >= 5
    if family != "instructblip":  # InstructBLIP's generate returns the language model's full ids too
        assert out.shape[1] == inputs["input_ids"].shape[1] + 5


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_text_only_prompt(family):
    model, processor = tiny_vlm(family)
    inputs = processor(text=[chat(processor, PROMPT, False)], return_tensors="pt")
    assert _n_image_tokens(model, inputs["input_ids"]) == 0
    if family in ("qwen2_vl", "qwen2_5_vl"):  # emitted for text-only input too, all text (0)
        assert not inputs["mm_token_type_ids"].any()
    if family != "instructblip":
        assert "pixel_values" not in inputs
        logits = _last_logits(model, inputs)
        assert torch.isfinite(logits).all()
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
        assert out.shape[1] == inputs["input_ids"].shape[1] + 5
        return
    # InstructBLIP: forward/generate require pixel_values. With no <image> placeholder in the ids
    # the image features are discarded, so any image gives the language model's own logits.
    assert set(inputs) == {"input_ids", "attention_mask", "qformer_input_ids", "qformer_attention_mask"}
    with pytest.raises(TypeError, match="pixel_values"):
        model(**inputs)
    with torch.no_grad():
        lm = model.language_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        dummy = model(**inputs, pixel_values=torch.zeros(1, 3, 16, 16))
    torch.testing.assert_close(dummy.logits, lm.logits, rtol=0, atol=1e-5)
    lm_inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    out = model.language_model.generate(**lm_inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 5


def _mixed(family, model, processor, img):
    """Row 0 with the image, row 1 the same prompt without, left-padded, as the brief's processor call."""
    if family == "instructblip":  # the processor cannot mix image and image-free rows
        return mixed_batch(family, processor, PROMPT, img)
    processor.tokenizer.padding_side = "left"
    return processor(text=[chat(processor, PROMPT, True), chat(processor, PROMPT, False)],
                     images=images_arg(family, [[img], []]), padding=True, return_tensors="pt")


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_mixed_batch_matches_single_rows(family):
    model, processor = tiny_vlm(family)
    img = test_image()
    batch = _mixed(family, model, processor, img)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert _n_image_tokens(model, ids[0]) == IMAGE_TOKENS[family]
    assert _n_image_tokens(model, ids[1]) == 0
    assert mask[0].all() and not mask[1, 0] and mask[1, -1]  # row 1 is left-padded

    both = _last_logits(model, batch)
    deltas_batch = getattr(getattr(model, "model", None), "rope_deltas", None)
    image_row = processor(text=[chat(processor, PROMPT, True)], images=images_arg(family, [[img]]),
                          return_tensors="pt")
    alone_image = _last_logits(model, image_row)
    deltas_image = getattr(getattr(model, "model", None), "rope_deltas", None)
    text_row = processor(text=[chat(processor, PROMPT, False)], return_tensors="pt")
    if family == "instructblip":
        with torch.no_grad():
            alone_text = model.language_model(input_ids=text_row["input_ids"],
                                              attention_mask=text_row["attention_mask"]).logits[:, -1]
    else:
        alone_text = _last_logits(model, text_row)
    torch.testing.assert_close(both[0], alone_image[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(both[1], alone_text[0], rtol=0, atol=1e-4)
    # The image must matter, or the comparison above proves nothing.
    assert (alone_image[0] - alone_text[0]).abs().max() > 1e-3

    if family in ("qwen2_vl", "qwen2_5_vl"):
        # M-RoPE: the 16 image tokens take 4x4 positions, so the image row's positions run 12
        # short of its length; rope_deltas is cached per row, the text-only row's delta is 0.
        assert deltas_batch.tolist() == [[-12], [0]]
        assert deltas_image.tolist() == [[-12]]
        assert not batch["mm_token_type_ids"][1].any()
        assert int((batch["mm_token_type_ids"][0] == 1).sum()) == IMAGE_TOKENS[family]
    if family in ("idefics3", "smolvlm"):  # the image-free row gets an all-zero image slot
        assert batch["pixel_values"].shape == (2, 1, 3, 32, 32)
        assert not batch["pixel_values"][1].any()


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_mixed_batch_generate_matches_single_rows(family):
    model, processor = tiny_vlm(family)
    img = test_image()
    batch = _mixed(family, model, processor, img)
    got = model.generate(**batch, max_new_tokens=5, do_sample=False)[:, -5:]
    image_row = processor(text=[chat(processor, PROMPT, True)], images=images_arg(family, [[img]]),
                          return_tensors="pt")
    text_row = processor(text=[chat(processor, PROMPT, False)], return_tensors="pt")
    text_model = model.language_model if family == "instructblip" else model
    text_row = {k: v for k, v in text_row.items() if not k.startswith("qformer")}
    assert torch.equal(got[0], model.generate(**image_row, max_new_tokens=5, do_sample=False)[0, -5:])
    assert torch.equal(got[1], text_model.generate(**text_row, max_new_tokens=5, do_sample=False)[0, -5:])


@pytest.mark.parametrize("family", [f for f in VLM_FAMILIES if f != "instructblip"])
def test_mixed_batch_helper_is_the_processor_call(family):
    model, processor = tiny_vlm(family)
    img = test_image()
    helper = mixed_batch(family, processor, PROMPT, img)
    assert processor.tokenizer.padding_side == "right"  # restored
    direct = _mixed(family, model, processor, img)
    assert set(helper) == set(direct)
    for key in helper:
        assert torch.equal(helper[key], direct[key]), key


def test_instructblip_processor_batch_needs_right_padded_qformer_and_positions():
    """InstructBLIP's own batching left-pads the Q-Former text (absolute positions) and puts LM
    padding between the prepended query tokens and BOS; fixing both restores single-row logits."""
    model, processor = tiny_vlm("instructblip")
    processor.tokenizer.padding_side = processor.qformer_tokenizer.padding_side = "left"
    img = test_image()
    short, long = PROMPT, "Describe the image in detail please, what is on the table?"
    batch = processor(text=[short, long], images=[img, img], padding=True, return_tensors="pt")
    assert not batch["attention_mask"][0, 8] and batch["attention_mask"][0, :8].all()  # pads after queries
    alone = _last_logits(model, processor(text=[short], images=[img], return_tensors="pt"))[0]
    assert (_last_logits(model, batch)[0] - alone).abs().max() > 1e-3
    qformer = processor.qformer_tokenizer([short, long], padding=True, padding_side="right", return_tensors="pt")
    fixed = dict(batch, qformer_input_ids=qformer["input_ids"], qformer_attention_mask=qformer["attention_mask"],
                 position_ids=(batch["attention_mask"].cumsum(-1) - 1).clamp(min=0))
    torch.testing.assert_close(_last_logits(model, fixed)[0], alone, rtol=0, atol=1e-4)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen_rope_deltas_go_stale_across_prompts(family):
    """`model.model.rope_deltas` survives a text-only prefill: a cached decode step after an image
    prompt uses the image prompt's delta unless it is reset to None first."""
    model, processor = tiny_vlm(family)
    image_row = processor(text=[chat(processor, PROMPT, True)], images=[test_image()], return_tensors="pt")
    text_row = processor(text=[chat(processor, PROMPT, False)], return_tensors="pt")
    step = torch.tensor([[processor.tokenizer.convert_tokens_to_ids("dog")]])
    with torch.no_grad():
        reference = model(input_ids=torch.cat([text_row["input_ids"], step], 1)).logits[0, -1]

        def prefill_then_step():
            past = model(input_ids=text_row["input_ids"], use_cache=True).past_key_values
            return model(input_ids=step, past_key_values=past).logits[0, -1]

        model(**image_row)
        assert model.model.rope_deltas.tolist() == [[-12]]
        stale = prefill_then_step()
        model(**image_row)
        model.model.rope_deltas = None
        fresh = prefill_then_step()
    assert (stale - reference).abs().max() > 1e-5
    torch.testing.assert_close(fresh, reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_save_round_trip(family, tmp_path):
    save_tiny_vlm(family, tmp_path)
    model, processor = tiny_vlm(family)
    img = test_image()
    inputs = processor(text=[chat(processor, PROMPT, True)], images=images_arg(family, [[img]]),
                       return_tensors="pt")

    # load_tiny_vlm = AutoModelForImageTextToText.from_pretrained + AutoProcessor.from_pretrained,
    # falling back to the torchvision-free processor where AutoProcessor needs torchvision.
    loaded, processor2 = load_tiny_vlm(tmp_path)
    assert type(loaded) is MODEL_CLASS[family] and isinstance(processor2, PROCESSOR_CLASS[family])
    if family in AUTO_PROCESSOR_NEEDS_TORCHVISION and not tf.utils.is_torchvision_available():
        assert type(processor2) is not PROCESSOR_CLASS[family]  # the stand-in
        with pytest.raises(ImportError, match="[Tt]orchvision"):
            tf.AutoProcessor.from_pretrained(tmp_path)
    else:
        assert type(processor2) is PROCESSOR_CLASS[family]  # AutoProcessor built it
    assert chat(processor2, PROMPT, True) == chat(processor, PROMPT, True)
    again = processor2(text=[chat(processor2, PROMPT, True)], images=images_arg(family, [[img]]),
                       return_tensors="pt")
    assert set(again) == set(inputs)
    for key in inputs:
        assert torch.equal(again[key], inputs[key]), key
    torch.testing.assert_close(_last_logits(loaded, again), _last_logits(model, inputs), rtol=0, atol=0)
