"""Tiny random-config models of every supported family, for tests and benchmarks.

Each builder returns a model small enough that a forward pass takes milliseconds on a CPU,
with at least two layers, grouped-query attention where the family has it, and heads wide
enough that per-head maths is not degenerate.
"""

from __future__ import annotations

import torch
import transformers as tf

VOCAB = 128
_TEXT = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
             pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)


def _llama_like(**extra):
    return {**_TEXT, **extra}


def _text_configs():
    return {
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, _llama_like()),
        "mistral": (tf.MistralConfig, tf.MistralForCausalLM, _llama_like(sliding_window=4)),
        "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, _llama_like()),
        "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM, _llama_like(head_dim=8)),
        "gemma": (tf.GemmaConfig, tf.GemmaForCausalLM, _llama_like(head_dim=8)),
        "gemma2": (tf.Gemma2Config, tf.Gemma2ForCausalLM,
                   _llama_like(head_dim=8, sliding_window=4, attn_logit_softcapping=5.0,
                               query_pre_attn_scalar=8)),
        "gemma3_text": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM,
                        _llama_like(head_dim=8, sliding_window=4, query_pre_attn_scalar=8,
                                    layer_types=["sliding_attention", "full_attention"])),
        "phi": (tf.PhiConfig, tf.PhiForCausalLM, _llama_like(num_key_value_heads=4)),
        "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM, _llama_like()),
        "gpt2": (tf.GPT2Config, tf.GPT2LMHeadModel,
                 dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=256,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)),
        "gpt_neox": (tf.GPTNeoXConfig, tf.GPTNeoXForCausalLM,
                     dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=256, pad_token_id=0,
                          bos_token_id=1, eos_token_id=2)),
        "opt": (tf.OPTConfig, tf.OPTForCausalLM,
                dict(vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=256, word_embed_proj_dim=32,
                     pad_token_id=0, bos_token_id=1, eos_token_id=2)),
    }


IMAGE_TOKEN = VOCAB - 1
_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
               image_size=16, patch_size=8)


def _vlm_configs():
    text = _llama_like()
    return {
        "llava": lambda: tf.LlavaForConditionalGeneration(tf.LlavaConfig(
            vision_config=tf.CLIPVisionConfig(**_VISION), text_config=tf.LlamaConfig(**text),
            image_token_id=IMAGE_TOKEN, vision_feature_layer=-1)),
        "llava_next": lambda: tf.LlavaNextForConditionalGeneration(tf.LlavaNextConfig(
            vision_config=tf.CLIPVisionConfig(**_VISION), text_config=tf.LlamaConfig(**text),
            image_token_id=IMAGE_TOKEN, vision_feature_layer=-1, image_grid_pinpoints=[[16, 16]])),
        "instructblip": lambda: tf.InstructBlipForConditionalGeneration(tf.InstructBlipConfig(
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=4, image_size=16, patch_size=8),
            qformer_config=dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                num_hidden_layers=1, num_attention_heads=4, encoder_hidden_size=32),
            text_config=tf.LlamaConfig(**text).to_dict(), num_query_tokens=4,
            image_token_index=IMAGE_TOKEN)),
        "qwen2_vl": lambda: tf.Qwen2VLForConditionalGeneration(tf.Qwen2VLConfig(
            text_config=dict(**text, rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
            vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=4, patch_size=4,
                               spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
            image_token_id=IMAGE_TOKEN, video_token_id=IMAGE_TOKEN - 1,
            vision_start_token_id=IMAGE_TOKEN - 2, vision_end_token_id=IMAGE_TOKEN - 3)),
        "qwen2_5_vl": lambda: tf.Qwen2_5_VLForConditionalGeneration(tf.Qwen2_5_VLConfig(
            text_config=dict(**text, rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
            vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=4,
                               out_hidden_size=32, patch_size=4, spatial_merge_size=2,
                               temporal_patch_size=2, in_channels=3, fullatt_block_indexes=[0],
                               window_size=8),
            image_token_id=IMAGE_TOKEN, video_token_id=IMAGE_TOKEN - 1,
            vision_start_token_id=IMAGE_TOKEN - 2, vision_end_token_id=IMAGE_TOKEN - 3)),
        "idefics3": lambda: tf.Idefics3ForConditionalGeneration(tf.Idefics3Config(
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=4, image_size=16, patch_size=4),
            text_config=tf.LlamaConfig(**text).to_dict(), image_token_id=IMAGE_TOKEN, scale_factor=2)),
        "smolvlm": lambda: tf.SmolVLMForConditionalGeneration(tf.SmolVLMConfig(
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=4, image_size=16, patch_size=4),
            text_config=tf.LlamaConfig(**text).to_dict(), image_token_id=IMAGE_TOKEN, scale_factor=2)),
    }


TEXT_FAMILIES = tuple(_text_configs())
VLM_FAMILIES = tuple(_vlm_configs())
FAMILIES = TEXT_FAMILIES + VLM_FAMILIES


# Gemma2's logit soft-capping has no sdpa kernel in transformers, so it only runs eagerly.
EAGER_ONLY = {"gemma2"}


def tiny_model(family: str, attn_implementation: str = "sdpa", seed: int = 0, dtype=torch.float32):
    """A randomly initialised model of `family` in eval mode (eager where the family has no sdpa)."""
    torch.manual_seed(seed)
    if family in EAGER_ONLY:
        attn_implementation = "eager"
    if family in TEXT_FAMILIES:
        config_cls, model_cls, kwargs = _text_configs()[family]
        config = config_cls(**kwargs)
        config._attn_implementation = attn_implementation
        model = model_cls(config)
    elif family in VLM_FAMILIES:
        model = _vlm_configs()[family]()
        model.set_attn_implementation(attn_implementation)
    else:
        raise KeyError(f"unknown tiny family {family!r}; known: {', '.join(FAMILIES)}")
    return model.to(dtype).eval()


def text_batch(batch: int = 2, length: int = 9, left_pad: int = 0, seed: int = 0):
    """Random token ids (avoiding special and image tokens) with an attention mask.

    Row i > 0 is left-padded by `left_pad * i` positions, so a batch mixes padding lengths.
    """
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB - 8, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    for i in range(batch):
        pad = min(left_pad * i, length - 2)
        ids[i, :pad] = 0
        mask[i, :pad] = 0
    return ids, mask


def model_inputs(family: str, ids: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
    """Forward/generate kwargs for `family`: InstructBLIP always needs an image and Q-Former text."""
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids) if mask is None else mask}
    if family == "instructblip":
        g = torch.Generator().manual_seed(1)
        inputs["pixel_values"] = torch.randn(ids.shape[0], 3, 16, 16, generator=g)
        inputs["qformer_input_ids"] = ids[:, -4:]
        inputs["qformer_attention_mask"] = torch.ones_like(ids[:, -4:])
    return inputs


class ByteTokenizer:
    """A tokenizer for tiny models: one token per UTF-8 byte, folded into the tiny vocabulary."""

    def __call__(self, text, add_special_tokens=False, return_tensors=None):
        ids = torch.tensor([[3 + b % (VOCAB - 8) for b in text.encode("utf-8")]])
        return type("Encoding", (), {"input_ids": ids})()
