"""Head-level access for every supported model: layout, capture, scaling and attention maps."""

from headwise.heads.attention import AttentionMaps, attention_maps, edit_attention_scores, head_probabilities
from headwise.heads.hooks import (HeadCapture, capture_heads, normalize_factors, out_proj_pre_hooks, scale_heads,
                                  scale_rows, split_heads)
from headwise.heads.layout import SUPPORTED, HeadLayout, InvalidHeadsError, layout

__all__ = [
    "SUPPORTED", "AttentionMaps", "edit_attention_scores", "HeadCapture", "HeadLayout", "InvalidHeadsError", "attention_maps",
    "capture_heads", "head_probabilities", "layout", "normalize_factors", "out_proj_pre_hooks", "scale_heads",
    "scale_rows", "split_heads",
]
