"""The head-access invariants on the real Gemma 3 270M: 18 layers x 4 query heads, one KV head, head_dim 256,
q/k norms, and a 512-token sliding window on five layers of every six. The long batch is left-padded and longer
than the window, so sliding layers mask keys that global layers still see."""

import pytest
import torch
from real_checks import (check_ablation_is_zeroed_columns, check_cached_steering, check_factor_one,
                         check_maps_match_eager, left_padded)

from headwise.heads import layout

pytestmark = pytest.mark.real
PROMPTS = ["The Eiffel Tower is in", "Photosynthesis converts light energy into chemical energy stored in"]
SLIDING, GLOBAL = 4, 5
PARAGRAPH = ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
             "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. "
             "Photosynthesis is the process by which plants use light to turn water and carbon dioxide into sugar. ")
LONG, PAD = 600, 40


def long_batch(tok) -> dict:
    """Two rows of 600 positions: 600 real tokens, and 40 pads then 560 real tokens."""
    ids = tok(PARAGRAPH * 20, return_tensors="pt").input_ids[0, :LONG]
    assert ids.numel() == LONG
    padded = torch.cat([torch.full((PAD,), tok.pad_token_id), ids[:LONG - PAD]])
    mask = torch.ones(2, LONG, dtype=torch.long)
    mask[0, :PAD] = 0
    return {"input_ids": torch.stack([padded, ids]), "attention_mask": mask}


def test_layout(gemma3):
    lay = layout(gemma3.model)
    assert (lay.num_layers, lay.num_heads, lay.num_kv_heads, lay.head_dim) == (18, 4, 1, 256)
    config = gemma3.model.config
    assert config.sliding_window == 512
    assert (config.layer_types[SLIDING], config.layer_types[GLOBAL]) == ("sliding_attention", "full_attention")


def test_factor_one_and_ablation(gemma3):
    enc = left_padded(gemma3.tokenizer, PROMPTS)
    check_factor_one(gemma3.model, enc)
    check_ablation_is_zeroed_columns(gemma3.model, enc, layer=GLOBAL, head=2)


def test_maps_match_eager_beyond_the_window(gemma3):
    maps = check_maps_match_eager(gemma3.model, long_batch(gemma3.tokenizer), {SLIDING: None, GLOBAL: None})
    # The window is in force: the last query of the unpadded row cannot see the first token on a sliding layer.
    last = LONG - 1
    assert (maps[SLIDING][1, :, last, :last - 511] == 0).all() and (maps[SLIDING][1, :, last, last - 511:] > 0).all()
    assert (maps[GLOBAL][1, :, last, 0] > 0).all()


def test_steering_in_cached_generate_equals_uncached_beyond_the_window(gemma3):
    factors = torch.ones(layout(gemma3.model).shape)
    factors[SLIDING, 1], factors[GLOBAL, 2], factors[11, 0] = 0.0, 2.0, 0.5
    check_cached_steering(gemma3.model, long_batch(gemma3.tokenizer), factors, n=3)
