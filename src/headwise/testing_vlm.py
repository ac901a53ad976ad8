"""Tiny random-weight vision-language models with matching real transformers processors.

`tiny_vlm(family)` builds, offline and in a fraction of a second, a randomly initialised VLM of
`family` together with the family's own transformers processor class (tokenizer, image processor
and a chat template in the style of the family's released one). Everything is sized so that the
number of image placeholder tokens the processor inserts is exactly what the vision tower yields:

==============  ===========================  =====================================================
family          image seen by the tower      placeholder tokens per image
==============  ===========================  =====================================================
llava           16x16, CLIP patch 4          16 ``<image>`` (CLS dropped, strategy "default")
llava_next      anyres over 16x16 tiles       88 ``<image>`` for a 32x32 picture (base + 2x2 grid)
qwen2_vl        32x32 -> 8x8 patches of 4     16 ``<|image_pad|>`` (2x2 merge) + start/end tokens
qwen2_5_vl      as qwen2_vl                   as qwen2_vl
idefics3        32x32, patch 4, shuffle 2     16 ``<image>`` + fake/global tokens (no splitting)
smolvlm         as idefics3                   as idefics3
instructblip    16x16, patch 8, Q-Former      8 ``<image>`` query tokens, prepended by the processor
==============  ===========================  =====================================================

All families share one word-level vocabulary (`VOCAB_WORDS`: a few hundred lower-cased English
words including the 80 COCO object names, digits, punctuation and every family's special tokens),
so a token id means the same thing in every family.

API: `VLM_FAMILIES`, `tiny_vlm`, `test_image`, `chat`, `images_arg` (the `images=` form per
family), `mixed_batch` (an image row and an image-free row in one left-padded batch),
`image_token_id`, `save_tiny_vlm` and `load_tiny_vlm`.

Quirks of this environment (transformers 5.x without torchvision or num2words):

* Qwen2-VL, Qwen2.5-VL and SmolVLM processors take a video processor, and every transformers
  video processor needs torchvision. Those families get a subclass of the real processor
  (`Qwen2VLProcessor`, ...) whose only change is that the video processor is left out
  (SmolVLM's also skips the num2words check, which only matters for video prompts). Images and
  text go through the real class's code unchanged. `save_tiny_vlm` writes the *real* class name
  (and a video-processor entry) into processor_config.json, so `AutoProcessor.from_pretrained`
  should build the genuine processor where torchvision (and, for SmolVLM, num2words) is
  installed (untested here); without them it raises ImportError and `load_tiny_vlm` loads the
  stand-in from the same files instead.
* Image processors are the PIL-backend classes (`CLIPImageProcessorPil`, ...), the only ones
  transformers 5 offers without torchvision; saved configs name the plain class, so Auto* picks
  whichever backend is installed.
* InstructBLIP's processor never puts an image placeholder into the text: it prepends
  `num_query_tokens` ``<image>`` tokens to every row whenever `images` is given (before BOS and
  before any left padding), so `chat(p, prompt, True) == chat(p, prompt, False)`, and it cannot
  make a batch mixing image and image-free rows (`mixed_batch` builds one by hand). Its forward
  and generate require `pixel_values`; an image-free prompt runs through `model.language_model`
  (or through the top-level forward with any dummy image, whose features are then discarded).
  `InstructBlipProcessor.__init__` drops `chat_template`, so the template is set afterwards and
  is missing from an `AutoProcessor.from_pretrained` load (`load_tiny_vlm` restores it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import transformers as tf
from PIL import Image
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

# --------------------------------------------------------------------------------------------
# vocabulary and tokenizer
# --------------------------------------------------------------------------------------------

SPECIAL_TOKENS = (
    "<pad>", "<s>", "</s>", "<unk>",  # ids 0..3, matching testing.py's pad=0, bos=1, eos=2
    "<image>", "<video>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>",
    "<fake_token_around_image>", "<global-img>", "<end_of_utterance>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


COCO_WORDS = _words(
    "person bicycle car motorcycle airplane bus train truck boat traffic light fire hydrant stop "
    "sign parking meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack "
    "umbrella handbag tie suitcase frisbee skis snowboard sports ball kite baseball bat glove "
    "skateboard surfboard tennis racket bottle wine glass cup fork knife spoon bowl banana apple "
    "sandwich orange broccoli carrot hot pizza donut cake chair couch potted plant bed dining "
    "table toilet tv laptop mouse remote keyboard cell phone microwave oven toaster sink "
    "refrigerator book clock vase scissors teddy hair drier toothbrush"
)

COMMON_WORDS = _words(
    "the a an and or but not no yes of to in on at by for with from into over under above below "
    "near next behind front left right top bottom middle center inside outside between around "
    "is are was were be been being am do does did have has had can could will would should may "
    "might must this that these those there here it its they them their he she his her him we "
    "us our you your i me my what which who whom whose where when why how many much some any "
    "all each every both few more most other such only own same so than too very just also "
    "image picture photo photograph scene view describe description detail details detailed "
    "show shows shown see seen look looks looking contain contains containing visible appear "
    "appears color colour colors red green blue yellow black white gray grey brown pink purple "
    "dark bright light small large big little tall short long wide old new young "
    "one two three four five six seven eight nine ten first second third last number count "
    "man woman men women boy girl child children people kid kids baby player group crowd "
    "animal animals vehicle vehicles food object objects thing things item items "
    "street road sidewalk building house room kitchen bathroom bedroom living office park field "
    "grass tree trees sky cloud clouds water beach sea ocean river lake mountain snow sun "
    "window door wall floor ground city town plate food fruit vegetable meal "
    "sitting standing walking running riding holding eating drinking playing lying "
    "parked flying swimming wearing carrying looking talking sleeping cooking "
    "question answer user assistant system helpful harmless honest please briefly "
    "caption write tell explain give list identify name find count "
    "word words sentence true false maybe unknown hello world thanks thank "
    "inst sys"
)

PUNCTUATION = tuple(".,:;!?'\"()[]{}-_/\\|<>@#$%^&*+=~`")
DIGITS = tuple("0123456789")


def _vocab_words() -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for w in (*SPECIAL_TOKENS, *COMMON_WORDS, *COCO_WORDS, *DIGITS, *PUNCTUATION):
        seen.setdefault(w, None)
    return tuple(seen)


VOCAB_WORDS = _vocab_words()
VOCAB_SIZE = len(VOCAB_WORDS)
TOKEN_ID = {w: i for i, w in enumerate(VOCAB_WORDS)}


def _tokenizer(add_bos: bool, padding_side: str = "right") -> tf.PreTrainedTokenizerFast:
    """A word-level fast tokenizer over VOCAB_WORDS: lower-cases, splits on spaces, punctuation and digits."""
    tok = Tokenizer(models.WordLevel(dict(TOKEN_ID), unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Punctuation(behavior="isolated"),
        pre_tokenizers.Digits(individual_digits=True),
    ])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins with spaces, tidies punctuation
    if add_bos:  # Llama/Vicuna-style tokenizers put BOS in front of every sequence
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS_ID)])
    fast = tf.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        additional_special_tokens=list(SPECIAL_TOKENS[4:]), padding_side=padding_side,
        model_max_length=4096, clean_up_tokenization_spaces=False)
    return fast


# --------------------------------------------------------------------------------------------
# chat templates (in the style of each family's released template)
# --------------------------------------------------------------------------------------------

_LLAVA_TEMPLATE = (  # llava-hf/llava-1.5-7b-hf
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

_LLAVA_NEXT_TEMPLATE = (  # llava-hf/llava-v1.6-mistral-7b-hf
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + message['content'][0]['text'] + '\n<</SYS>>\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<image>\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'][0]['text'] + '</s> ' }}"
    "{% endif %}{% endfor %}"
)

_QWEN2_VL_TEMPLATE = (  # Qwen/Qwen2-VL-2B-Instruct (also Qwen2.5-VL)
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_IDEFICS3_BODY = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}"
    "{% if message['content'] is not string and message['content'][0]['type'] == 'image' %}{{ ':' }}"
    "{% else %}{{ ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
_IDEFICS3_TEMPLATE = "<|begin_of_text|>" + _IDEFICS3_BODY  # HuggingFaceM4/Idefics3-8B-Llama3
_SMOLVLM_TEMPLATE = "<|im_start|>" + _IDEFICS3_BODY  # HuggingFaceTB/SmolVLM-256M-Instruct

# InstructBLIP ships no chat template: the prompt is the bare instruction, and the processor
# prepends the Q-Former query placeholders itself. Image entries therefore render to nothing.
_INSTRUCTBLIP_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}{% endif %}"
    "{% endif %}{% endfor %}"
)


# --------------------------------------------------------------------------------------------
# processors without a video processor (torchvision-free)
# --------------------------------------------------------------------------------------------

class _NoVideoQwen2VLProcessor(tf.Qwen2VLProcessor):
    """`Qwen2VLProcessor` without its (torchvision-only) video processor; images and text unchanged."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class _NoVideoQwen2_5_VLProcessor(tf.Qwen2_5_VLProcessor):
    """`Qwen2_5_VLProcessor` without its (torchvision-only) video processor."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class _NoVideoSmolVLMProcessor(tf.SmolVLMProcessor):
    """`SmolVLMProcessor` without its video processor and the num2words check (video prompts only)."""

    def __init__(self, image_processor, tokenizer, image_seq_len: int = 169, chat_template=None, **kwargs):
        # Mirrors SmolVLMProcessor.__init__ minus the num2words check and the video processor.
        self.fake_image_token = getattr(tokenizer, "fake_image_token", "<fake_token_around_image>")
        self.image_token = getattr(tokenizer, "image_token", "<image>")
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.end_of_utterance_token = getattr(tokenizer, "end_of_utterance_token", "<end_of_utterance>")
        self.global_image_token = getattr(tokenizer, "global_image_token", "<global-img>")
        self.image_seq_len = image_seq_len
        self.video_token = getattr(tokenizer, "video_token", "<video>")
        tf.ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)

    def apply_chat_template(self, conversation, chat_template=None, **kwargs):
        # SmolVLMProcessor's override reads video-processor defaults; images need none of them.
        return tf.ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)


# The real class each stand-in replaces, written into processor_config.json on save.
_REAL_PROCESSOR_CLASS = {
    _NoVideoQwen2VLProcessor: "Qwen2VLProcessor",
    _NoVideoQwen2_5_VLProcessor: "Qwen2_5_VLProcessor",
    _NoVideoSmolVLMProcessor: "SmolVLMProcessor",
}


# --------------------------------------------------------------------------------------------
# model + processor builders
# --------------------------------------------------------------------------------------------

# Same text sizes as testing.py, with this module's vocabulary.
_TEXT = {"vocab_size": VOCAB_SIZE, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
         "pad_token_id": PAD_ID, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "tie_word_embeddings": False}
_CLIP = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
         "image_size": 16, "patch_size": 4}
_CLIP_MEAN_STD = {"image_mean": [0.48145466, 0.4578275, 0.40821073],
                  "image_std": [0.26862954, 0.26130258, 0.27577711]}
_MROPE = {"type": "mrope", "mrope_section": [1, 1, 2]}
_QWEN_IDS = {"image_token_id": TOKEN_ID["<|image_pad|>"], "video_token_id": TOKEN_ID["<|video_pad|>"],
             "vision_start_token_id": TOKEN_ID["<|vision_start|>"],
             "vision_end_token_id": TOKEN_ID["<|vision_end|>"]}
_LLAVA_NEXT_PINPOINTS = [[16, 32], [32, 16], [32, 32]]
_IDEFICS_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                   "image_size": 32, "patch_size": 4}
_IDEFICS_SEQ_LEN = (32 // 4) ** 2 // 2**2  # (image_size / patch_size)^2 / scale_factor^2 = 16
_BLIP_QUERIES = 8


def _llava():
    model = tf.LlavaForConditionalGeneration(tf.LlavaConfig(
        vision_config=tf.CLIPVisionConfig(**_CLIP), text_config=tf.LlamaConfig(**_TEXT),
        image_token_id=TOKEN_ID["<image>"], vision_feature_layer=-1,
        vision_feature_select_strategy="default", projector_hidden_act="gelu"))
    image_processor = tf.CLIPImageProcessorPil(
        size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}, **_CLIP_MEAN_STD)
    processor = tf.LlavaProcessor(
        image_processor=image_processor, tokenizer=_tokenizer(add_bos=True), patch_size=_CLIP["patch_size"],
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=_LLAVA_TEMPLATE)
    return model, processor


def _llava_next():
    model = tf.LlavaNextForConditionalGeneration(tf.LlavaNextConfig(
        vision_config=tf.CLIPVisionConfig(**_CLIP), text_config=tf.LlamaConfig(**_TEXT),
        image_token_id=TOKEN_ID["<image>"], vision_feature_layer=-1,
        vision_feature_select_strategy="default", image_grid_pinpoints=_LLAVA_NEXT_PINPOINTS))
    image_processor = tf.LlavaNextImageProcessorPil(
        size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16},
        image_grid_pinpoints=_LLAVA_NEXT_PINPOINTS, **_CLIP_MEAN_STD)
    processor = tf.LlavaNextProcessor(
        image_processor=image_processor, tokenizer=_tokenizer(add_bos=True), patch_size=_CLIP["patch_size"],
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=_LLAVA_NEXT_TEMPLATE)
    return model, processor


def _qwen_image_processor():
    # 32x32 pictures stay 32x32: an 8x8 grid of 4x4 patches, merged 2x2 into 16 LM tokens.
    return tf.Qwen2VLImageProcessorPil(min_pixels=8 * 8, max_pixels=32 * 32, patch_size=4, merge_size=2,
                                       temporal_patch_size=2)


def _qwen2_vl():
    model = tf.Qwen2VLForConditionalGeneration(tf.Qwen2VLConfig(
        text_config={**_TEXT, "rope_scaling": _MROPE},
        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 4, "mlp_ratio": 2,
                       "patch_size": 4, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3},
        **_QWEN_IDS))
    processor = _NoVideoQwen2VLProcessor(image_processor=_qwen_image_processor(),
                                         tokenizer=_tokenizer(add_bos=False), chat_template=_QWEN2_VL_TEMPLATE)
    return model, processor


def _qwen2_5_vl():
    model = tf.Qwen2_5_VLForConditionalGeneration(tf.Qwen2_5_VLConfig(
        text_config={**_TEXT, "rope_scaling": _MROPE},
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4,
                       "out_hidden_size": 32, "patch_size": 4, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "in_channels": 3, "fullatt_block_indexes": [0], "window_size": 16},
        **_QWEN_IDS))
    processor = _NoVideoQwen2_5_VLProcessor(image_processor=_qwen_image_processor(),
                                            tokenizer=_tokenizer(add_bos=False), chat_template=_QWEN2_VL_TEMPLATE)
    return model, processor


def _idefics_like(config_cls, model_cls, image_processor_cls, make_processor, template):
    model = model_cls(config_cls(
        vision_config=_IDEFICS_VISION, text_config=tf.LlamaConfig(**_TEXT).to_dict(),
        image_token_id=TOKEN_ID["<image>"], scale_factor=2))
    image_processor = image_processor_cls(
        do_image_splitting=False, size={"longest_edge": 32}, max_image_size={"longest_edge": 32},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor = make_processor(image_processor=image_processor, tokenizer=_tokenizer(add_bos=False),
                               image_seq_len=_IDEFICS_SEQ_LEN, chat_template=template)
    return model, processor


def _idefics3():
    return _idefics_like(tf.Idefics3Config, tf.Idefics3ForConditionalGeneration, tf.Idefics3ImageProcessorPil,
                         tf.Idefics3Processor, _IDEFICS3_TEMPLATE)


def _smolvlm():
    return _idefics_like(tf.SmolVLMConfig, tf.SmolVLMForConditionalGeneration, tf.SmolVLMImageProcessorPil,
                         _NoVideoSmolVLMProcessor, _SMOLVLM_TEMPLATE)


def _instructblip():
    qformer_tokenizer = _tokenizer(add_bos=False)
    model = tf.InstructBlipForConditionalGeneration(tf.InstructBlipConfig(
        vision_config={**_CLIP, "patch_size": 8},
        qformer_config={"vocab_size": len(qformer_tokenizer), "hidden_size": 32, "intermediate_size": 64,
                        "num_hidden_layers": 1, "num_attention_heads": 4, "encoder_hidden_size": 32,
                        "pad_token_id": PAD_ID},
        text_config=tf.LlamaConfig(**_TEXT).to_dict(), num_query_tokens=_BLIP_QUERIES,
        image_token_index=TOKEN_ID["<image>"]))
    image_processor = tf.BlipImageProcessorPil(size={"height": 16, "width": 16}, **_CLIP_MEAN_STD)
    processor = tf.InstructBlipProcessor(image_processor=image_processor, tokenizer=_tokenizer(add_bos=True),
                                         qformer_tokenizer=qformer_tokenizer, num_query_tokens=_BLIP_QUERIES)
    processor.chat_template = _INSTRUCTBLIP_TEMPLATE  # InstructBlipProcessor.__init__ drops the kwarg
    return model, processor


_BUILDERS = {
    "llava": _llava,
    "llava_next": _llava_next,
    "qwen2_vl": _qwen2_vl,
    "qwen2_5_vl": _qwen2_5_vl,
    "idefics3": _idefics3,
    "smolvlm": _smolvlm,
    "instructblip": _instructblip,
}
VLM_FAMILIES: tuple[str, ...] = tuple(_BUILDERS)


def tiny_vlm(family: str, seed: int = 0, attn_implementation: str = "sdpa"):
    """A random-weight `family` VLM (float32, eval mode) and its processor, built offline.

    The model's config carries the processor's image token id (`image_token_id`, or
    `image_token_index` for InstructBLIP); the generation config knows the pad/bos/eos ids.
    """
    if family not in _BUILDERS:
        raise KeyError(f"unknown tiny VLM family {family!r}; known: {', '.join(VLM_FAMILIES)}")
    torch.manual_seed(seed)
    model, processor = _BUILDERS[family]()
    model.set_attn_implementation(attn_implementation)
    gen = model.generation_config
    gen.pad_token_id, gen.bos_token_id, gen.eos_token_id = PAD_ID, BOS_ID, EOS_ID
    return model.to(torch.float32).eval(), processor


def image_token_id(model) -> int:
    """The placeholder id the model replaces with image features."""
    cfg = model.config
    value = getattr(cfg, "image_token_id", None)
    return value if value is not None else cfg.image_token_index


def test_image(seed: int = 0, size=(32, 32)) -> Image.Image:
    """A deterministic RGB picture: a smooth colour gradient plus seeded noise."""
    width, height = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / max(width - 1, 1), yy * 255 / max(height - 1, 1),
                     np.full_like(xx, 64 + 32 * (seed % 5), dtype=float)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 24, size=(height, width, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


test_image.__test__ = False  # not a pytest test, despite its name


def chat(processor, prompt: str, with_image: bool) -> str:
    """One user turn rendered with the processor's chat template, generation prompt appended."""
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": prompt}]
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def images_arg(family: str, images_per_row: list[list]) -> list:
    """The `images=` argument the family's processor wants for a batch, one list of images per row.

    Idefics3 and SmolVLM take the nested per-row form (an empty list for a row without an image);
    the others take the flat list of every image in row order.
    """
    if family in ("idefics3", "smolvlm"):
        return [list(row) for row in images_per_row]
    return [image for row in images_per_row for image in row]


def mixed_batch(family: str, processor, prompt: str, image) -> tf.BatchFeature:
    """A left-padded batch of two rows for ONE `model(**batch)` call: `prompt` with `image`, then without.

    Every family but InstructBLIP gets exactly what its processor makes of
    `processor(text=[with_image, without], images=..., padding=True)` with left padding.
    InstructBLIP's processor cannot mix rows (it prepends query placeholders to every row whenever
    images are given), so its batch is assembled from two single-row encodings: `pixel_values`
    and `qformer_*` cover only the image row, the LM `input_ids` cover both. The model's
    `masked_scatter` fills the placeholders of the image row and leaves the text-only row alone.
    """
    with_image, without = chat(processor, prompt, True), chat(processor, prompt, False)
    tokenizer = processor.tokenizer
    if family != "instructblip":
        side, tokenizer.padding_side = tokenizer.padding_side, "left"
        try:
            return processor(text=[with_image, without], images=images_arg(family, [[image], []]),
                             padding=True, return_tensors="pt")
        finally:
            tokenizer.padding_side = side
    image_row = processor(text=[with_image], images=[image], return_tensors="pt")
    text_row = processor(text=[without], return_tensors="pt")
    rows = [image_row["input_ids"][0], text_row["input_ids"][0]]
    length = max(len(r) for r in rows)
    ids = torch.full((2, length), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((2, length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, length - len(row):] = row
        mask[i, length - len(row):] = 1
    return tf.BatchFeature({
        "input_ids": ids, "attention_mask": mask, "pixel_values": image_row["pixel_values"],
        "qformer_input_ids": image_row["qformer_input_ids"],
        "qformer_attention_mask": image_row["qformer_attention_mask"]})


# Video-processor settings written next to the image processor for the stand-in families, so
# that AutoProcessor can build the genuine processor where torchvision is installed. (Not
# exercised here: this environment has no torchvision.)
def _video_processor_config(processor) -> dict:
    ip = processor.image_processor
    if isinstance(processor, tf.SmolVLMProcessor):
        return {"video_processor_type": "SmolVLMVideoProcessor", "size": dict(ip.size),
                "max_image_size": dict(ip.max_image_size), "do_image_splitting": False,
                "image_mean": list(ip.image_mean), "image_std": list(ip.image_std)}
    return {"video_processor_type": "Qwen2VLVideoProcessor", "size": dict(ip.size), "patch_size": ip.patch_size,
            "temporal_patch_size": ip.temporal_patch_size, "merge_size": ip.merge_size,
            "image_mean": list(ip.image_mean), "image_std": list(ip.image_std)}


def save_tiny_vlm(family: str, path, seed: int = 0) -> Path:
    """`save_pretrained` the tiny model and its processor into `path` (created if needed).

    `AutoModelForImageTextToText.from_pretrained(path)` loads the model for every family;
    `AutoProcessor.from_pretrained(path)` loads the processor for llava, llava_next, idefics3 and
    instructblip (whose loaded processor lacks the chat template: InstructBlipProcessor.__init__
    drops it; `load_tiny_vlm` puts it back). For qwen2_vl, qwen2_5_vl and smolvlm AutoProcessor
    needs torchvision (and num2words for smolvlm); `load_tiny_vlm` works without them.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model, processor = tiny_vlm(family, seed=seed)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    real = _REAL_PROCESSOR_CLASS.get(type(processor))
    if real is not None:  # name the genuine transformers class, not the torchvision-free stand-in
        file = path / "processor_config.json"
        data = json.loads(file.read_text())
        data["processor_class"] = real
        data["video_processor"] = _video_processor_config(processor)
        file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


_STAND_INS = {"qwen2_vl": _NoVideoQwen2VLProcessor, "qwen2_5_vl": _NoVideoQwen2_5_VLProcessor,
              "smolvlm": _NoVideoSmolVLMProcessor}


def load_tiny_vlm(path):
    """Load a folder written by `save_tiny_vlm`: (AutoModelForImageTextToText, AutoProcessor) in eval mode.

    Where AutoProcessor cannot build the family's processor because torchvision (video processor)
    or num2words is missing, the torchvision-free stand-in is loaded from the same files. A chat
    template the processor class drops on load (InstructBLIP) is restored from chat_template.jinja.
    """
    path = os.fspath(path)
    model = tf.AutoModelForImageTextToText.from_pretrained(path).eval()
    try:
        processor = tf.AutoProcessor.from_pretrained(path)
    except (ImportError, OSError, AttributeError, ValueError, TypeError):
        stand_in = _STAND_INS.get(model.config.model_type)
        if stand_in is None:
            raise
        processor = stand_in.from_pretrained(path)
    template = Path(path) / "chat_template.jinja"
    if getattr(processor, "chat_template", None) is None and template.exists():
        processor.chat_template = template.read_text()
    return model, processor
