"""The head-access invariants on the real SmolLM2-135M-Instruct (30 layers, 9 query heads, 3 KV heads)."""

import pytest
import torch
from real_checks import (check_ablation_is_zeroed_columns, check_cached_steering, check_factor_one,
                         check_maps_match_eager, left_padded)

from headwise.heads import layout

pytestmark = pytest.mark.real
PROMPTS = ["The Eiffel Tower is in", "Photosynthesis converts light energy into chemical energy stored in"]


def test_layout(smollm2):
    lay = layout(smollm2.model)
    assert (lay.num_layers, lay.num_heads, lay.num_kv_heads, lay.head_dim) == (30, 9, 3, 64)


def test_factor_one_and_ablation(smollm2):
    enc = left_padded(smollm2.tokenizer, PROMPTS)
    check_factor_one(smollm2.model, enc)
    check_ablation_is_zeroed_columns(smollm2.model, enc, layer=3, head=4)


def test_maps_match_eager(smollm2):
    check_maps_match_eager(smollm2.model, left_padded(smollm2.tokenizer, PROMPTS), {0: [0, 4, 8], 17: [2], 29: None})


def test_steering_in_cached_generate_equals_uncached(smollm2):
    factors = torch.ones(layout(smollm2.model).shape)
    factors[3, 4], factors[20, 1] = 0.0, 2.0
    check_cached_steering(smollm2.model, left_padded(smollm2.tokenizer, PROMPTS), factors)
