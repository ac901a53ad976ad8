"""Attention probabilities of chosen heads, computed beside the model's own attention backend.

While `attention_maps` is active, the text decoder's attention implementation is swapped for a
thin wrapper registered with transformers' AttentionInterface: it runs the original backend (sdpa,
flash, eager...) for the output, so logits do not change, and additionally computes the softmax
probabilities of the requested heads only, in float32, from the same (post-RoPE, post-norm) q and
k the backend received. The wrapper is registered under the original's name prefixed with
"headwise+", with the original's mask function, so the masks it sees have the original's format.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from headwise.heads.layout import HeadLayout, InvalidHeadsError, layout

PREFIX = "headwise+"
# id(attention module) -> list of (collector, layer, head index tensor) for every active context.
_ACTIVE: dict[int, list[tuple["AttentionMaps", int, torch.Tensor]]] = {}
# id(attention module) -> (edit function, layer, probability sink or None) for `edit_attention_scores`.
_EDITORS: dict[int, tuple[Callable, int, Callable | None]] = {}


class AttentionMaps:
    """`.maps[layer]`: probabilities [batch, len(heads), queries, keys] from the latest forward, float32."""

    def __init__(self, heads: dict[int, list[int]], differentiable: bool):
        self.heads = heads
        self.differentiable = differentiable
        self.maps: dict[int, torch.Tensor] = {}


def _allowed_without_mask(q_len: int, k_len: int, device, sliding_window: int | None) -> torch.Tensor:
    # The mask is None when the backend relies on is_causal; decode steps sit at the end of the keys.
    i = torch.arange(q_len, device=device)[:, None] + (k_len - q_len)
    j = torch.arange(k_len, device=device)[None, :]
    allowed = j <= i
    if sliding_window:
        allowed &= (i - j) < sliding_window
    return allowed[None, None]


def _masked(scores: torch.Tensor, mask: torch.Tensor | None, sliding_window: int | None) -> torch.Tensor:
    q_len, k_len = scores.shape[-2:]
    lowest = torch.finfo(scores.dtype).min
    if mask is None:
        return scores.masked_fill(~_allowed_without_mask(q_len, k_len, scores.device, sliding_window), lowest)
    if mask.dim() == 2:  # flash backends: [batch, keys] padding mask, causal implied
        allowed = _allowed_without_mask(q_len, k_len, scores.device, sliding_window) & mask[:, None, None, -k_len:].bool()
        return scores.masked_fill(~allowed, lowest)
    mask = mask[..., -q_len:, :k_len]
    if mask.dtype == torch.bool:
        return scores.masked_fill(~mask, lowest)
    return (scores + mask.float()).clamp_min(lowest)


def head_scores(query: torch.Tensor, key: torch.Tensor, heads: torch.Tensor | None = None,
                scaling: float | None = None, softcap: float | None = None) -> torch.Tensor:
    """Pre-softmax attention scores of query heads `heads` (all when None), [batch, heads, q, k], float32.

    query: [batch, heads, q, head_dim]; key: [batch, kv_heads, k, head_dim] (GQA: head h reads kv head
    h // (heads / kv_heads)).
    """
    groups = query.shape[1] // key.shape[1]
    if heads is None:
        heads = torch.arange(query.shape[1], device=query.device)
    q = query[:, heads].float()
    k = key[:, heads.div(groups, rounding_mode="floor")].float()
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = q @ k.transpose(-1, -2) * scaling
    if softcap:
        scores = torch.tanh(scores / softcap) * softcap
    return scores


def head_probabilities(module, query: torch.Tensor, key: torch.Tensor, attention_mask, heads: torch.Tensor,
                       scaling: float | None = None, softcap: float | None = None,
                       sliding_window: int | None = None) -> torch.Tensor:
    """Softmax attention probabilities of query heads `heads`, [batch, len(heads), q, k], in float32."""
    scores = head_scores(query, key, heads, scaling, softcap)
    return torch.softmax(_masked(scores, attention_mask, sliding_window), dim=-1)


def _edited_attention(module, query, key, value, attention_mask, edit, layer, on_probs, kwargs):
    # Eager maths in float32 for this layer only, so an edit of the scores reaches the output.
    scores = edit(head_scores(query, key, scaling=kwargs.get("scaling"), softcap=kwargs.get("softcap")), layer)
    probs = torch.softmax(_masked(scores, attention_mask, kwargs.get("sliding_window")), dim=-1)
    if on_probs is not None:
        # These probabilities are the ones the output is computed from, so their gradient is the
        # gradient of the loss w.r.t. the attention weights (SEEKR's task sensitivity).
        on_probs(probs, layer)
    groups = query.shape[1] // value.shape[1]
    v = value.repeat_interleave(groups, dim=1).float()
    out = (probs @ v).to(query.dtype).transpose(1, 2).contiguous()
    return out, probs.to(query.dtype)


def _wrapper(original: str):
    def attention(module, query, key, value, attention_mask, **kwargs):
        if original == "eager":
            # Each modeling file has its own eager function (softcap, upcasting...); use the module's.
            fn = sys.modules[type(module).__module__].eager_attention_forward
        else:
            fn = ALL_ATTENTION_FUNCTIONS[original]
        editor = _EDITORS.get(id(module))
        if editor is not None:
            out = _edited_attention(module, query, key, value, attention_mask, *editor, kwargs)
        else:
            out = fn(module, query, key, value, attention_mask, **kwargs)
        for collector, layer, heads in _ACTIVE.get(id(module), ()):
            if editor is not None:  # the probabilities the output was computed from: after the edit
                probs = out[1][:, heads.to(query.device)].float()
            else:
                with torch.set_grad_enabled(collector.differentiable and torch.is_grad_enabled()):
                    probs = head_probabilities(module, query, key, attention_mask, heads.to(query.device),
                                               scaling=kwargs.get("scaling"), softcap=kwargs.get("softcap"),
                                               sliding_window=kwargs.get("sliding_window"))
            collector.maps[layer] = probs if collector.differentiable else probs.detach()
        return out
    return attention


def _register(original: str) -> str:
    name = PREFIX + original
    if name not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(name, _wrapper(original))
        mask_fn = ALL_MASK_ATTENTION_FUNCTIONS[original] if original in ALL_MASK_ATTENTION_FUNCTIONS else None
        if mask_fn is not None:
            ALL_MASK_ATTENTION_FUNCTIONS.register(name, mask_fn)
    return name


def _check_heads(lay: HeadLayout, heads) -> dict[int, list[int]]:
    if isinstance(heads, Mapping):
        items = heads.items()
    elif isinstance(heads, Iterable):
        items = ((layer, None) for layer in heads)
    else:
        raise InvalidHeadsError(f"heads must be a {{layer: [heads]}} mapping, got {type(heads).__name__}.")
    out = {}
    for layer, hs in items:
        layer = lay.check_layer(layer)
        hs = range(lay.num_heads) if hs is None else hs
        out[layer] = [lay.check_head(h) for h in hs]
        if not out[layer]:
            raise InvalidHeadsError(f"no heads were chosen for layer {layer}.")
    return out


@contextmanager
def attention_maps(model, heads: Mapping[int, Iterable[int] | None] | Iterable[int],
                   differentiable: bool = False) -> Iterator[AttentionMaps]:
    """Collect the attention probabilities of only the chosen heads.

    Args:
        model: any supported model, on any attention backend.
        heads: `{layer: [heads]}` (`None` for all heads of a layer), or a list of layers for all their heads.
        differentiable: keep the autograd graph so a loss on the maps trains the model's q and k.

    GQA, causal and padding masks, sliding windows and logit soft-capping are honoured; dropout is not
    (use eval mode for maps that match the computation).
    """
    lay = layout(model)
    collector = AttentionMaps(_check_heads(lay, heads), differentiable)
    entries = [(id(lay.attentions[layer]), (collector, layer, torch.tensor(hs))) for layer, hs in collector.heads.items()]
    try:
        with _wrapped_backend(lay):
            for key, entry in entries:
                _ACTIVE.setdefault(key, []).append(entry)
            yield collector
    finally:
        for key, entry in entries:
            if entry in _ACTIVE.get(key, ()):
                _ACTIVE[key].remove(entry)
                if not _ACTIVE[key]:
                    del _ACTIVE[key]


@contextmanager
def _wrapped_backend(lay: HeadLayout) -> Iterator[None]:
    """Route the text decoder's attention through the headwise wrapper; restore the backend on exit."""
    configs = {id(attn.config): attn.config for attn in lay.attentions}
    changed = []
    try:
        for config in configs.values():
            current = config._attn_implementation
            if not current.startswith(PREFIX):
                config._attn_implementation_internal = _register(current)
                changed.append((config, current))
        yield
    finally:
        for config, original in changed:
            config._attn_implementation_internal = original


@contextmanager
def edit_attention_scores(model, layers: Iterable[int], edit: Callable[[torch.Tensor, int], torch.Tensor],
                          on_probs: Callable[[torch.Tensor, int], None] | None = None) -> Iterator[None]:
    """Edit the pre-softmax attention scores of the given layers: `edit(scores, layer) -> scores`.

    scores are [batch, heads, queries, keys] in float32, before masking. The edited layers run eager
    maths (float32) instead of the model's backend; the other layers are untouched. Used by PAI.
    `on_probs(probs, layer)`, if given, receives the post-softmax probabilities of all heads that the
    layer's output is computed from (on the autograd graph), e.g. to take gradients with respect to them.
    """
    lay = layout(model)
    keys = [(id(lay.attentions[layer]), layer) for layer in sorted({lay.check_layer(l) for l in layers})]
    clash = [layer for key, layer in keys if key in _EDITORS]
    if clash:
        raise InvalidHeadsError(f"layers {clash} already have an attention edit active; nest edits in one function.")
    try:
        with _wrapped_backend(lay):
            for key, layer in keys:
                _EDITORS[key] = (edit, layer, on_probs)
            yield
    finally:
        for key, _ in keys:
            _EDITORS.pop(key, None)
