"""Tiny random-config models of every supported family, for tests and benchmarks.

Text families are built here; vision-language families come from `headwise.testing_vlm`, which
builds them with their real processors (one builder for both uses).

Each builder returns a model small enough that a forward pass takes milliseconds on a CPU,
with at least two layers, grouped-query attention where the family has it, and heads wide
enough that per-head maths is not degenerate.
"""

from __future__ import annotations

import torch
import transformers as tf

from headwise import testing_vlm

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


TEXT_FAMILIES = tuple(_text_configs())
VLM_FAMILIES = testing_vlm.VLM_FAMILIES  # the one builder of tiny VLMs, with their real processors
FAMILIES = TEXT_FAMILIES + VLM_FAMILIES
# Token ids that are plain words in every tiny vocabulary: below them the VLMs' special and image tokens.
FIRST_WORD = len(testing_vlm.SPECIAL_TOKENS)


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
        model = testing_vlm.tiny_vlm(family, seed=seed, attn_implementation=attn_implementation)[0]
    else:
        raise KeyError(f"unknown tiny family {family!r}; known: {', '.join(FAMILIES)}")
    return model.to(dtype).eval()


def text_batch(batch: int = 2, length: int = 9, left_pad: int = 0, seed: int = 0):
    """Random token ids (plain words: no special or image token of any tiny vocabulary) with an attention mask.

    Row i > 0 is left-padded by `left_pad * i` positions, so a batch mixes padding lengths.
    """
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(FIRST_WORD, VOCAB - 8, (batch, length), generator=g)
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
