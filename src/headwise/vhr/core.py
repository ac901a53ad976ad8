"""VHR: choose vision-aware heads in a lockstep first step, then decode with them reinforced.

The lockstep runs the image rows and their image-free twins as one left-padded batch. At each
reinforced layer (in order, inside one forward) a pre-hook on the out-projection compares the two
rows' head outputs at the last position, applies Eq. 6 and 7, and scales the chosen heads by
alpha in both rows before the out-projection, so deeper layers are measured on reinforced states.
The heads are then fixed and `model.generate` decodes the image rows with them scaled at every
position. Cost: one extra batched prefill (image rows + their shorter text rows) per call; the
decode steps cost one elementwise multiply per reinforced layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headwise.errors import HeadwiseError
from headwise.heads import layout, out_proj_pre_hooks, scale_heads, scale_rows, split_heads
from headwise.vhr.heads import default_layers, divergence, select_heads
from headwise.vhr.inputs import encode, to_device


@dataclass
class Lockstep:
    """What the lockstep prefill found: per sample, layer and head."""

    vhd: torch.Tensor  # [n, layers, heads] float32; zero for layers that were not measured
    chosen: torch.Tensor  # [n, layers, heads] bool


def check_alpha(alpha: float) -> float:
    if not alpha > 0:
        raise HeadwiseError(f"alpha must be > 0 (2 reinforces, 1 changes nothing), got {alpha}.")
    return float(alpha)


def resolve_layers(lay, layers) -> list[int]:
    return default_layers(lay.num_layers) if layers is None else sorted({lay.check_layer(l) for l in layers})


@torch.no_grad()
def lockstep(model, batch: dict, n: int, layers: list[int], alpha: float, measure: list[int] | None = None,
             outlier_rule: bool = True, reinforce_text: bool = True) -> Lockstep:
    """Run the paired batch (n image rows, then n image-free rows) once, choosing and scaling heads layer by layer.

    Args:
        layers: layers to reinforce. measure: layers whose VHD is recorded (default: the reinforced ones).
        reinforce_text: scale the chosen heads in the image-free rows too (the paper's reading).
    """
    lay = layout(model)
    vhd = torch.zeros(n, *lay.shape)
    chosen = torch.zeros(n, *lay.shape, dtype=torch.bool)
    reinforce = set(layers)

    def make(layer: int):
        def hook(module, args):
            x = args[0]
            heads = split_heads(x[:, -1], lay.num_heads)  # left padding: -1 is every row's last token
            v = divergence(heads[:n], heads[n:])
            vhd[:, layer] = v.cpu()
            if layer not in reinforce:
                return None
            pick = select_heads(v, heads[n:], outlier_rule)
            chosen[:, layer] = pick.cpu()
            f = torch.where(pick, alpha, 1.0)
            rows = torch.cat([f, f if reinforce_text else torch.ones_like(f)])
            return (scale_rows(x, rows, lay.num_heads), *args[1:])
        return hook

    with out_proj_pre_hooks(lay, {layer: make(layer) for layer in sorted(reinforce | set(measure or ()))}):
        model(**batch, use_cache=False)
    return Lockstep(vhd, chosen)


def head_divergence(model, processor, image, prompt: str) -> torch.Tensor:
    """VHD [layers, heads] at the first generation step, nothing reinforced."""
    lay = layout(model)
    batch = to_device(encode(model, processor, [image], [prompt], text_only=True), model)
    return lockstep(model, batch, 1, layers=[], alpha=1.0, measure=list(range(lay.num_layers))).vhd[0]


@dataclass
class Generation:
    texts: list[str]
    sequences: torch.Tensor  # generated token ids only, [n * num_return_sequences, new tokens]
    heads: torch.Tensor | None = None  # [n, layers, heads] bool, the reinforced heads (VHR)
    vhd: torch.Tensor | None = None


def _decode(processor, model, batch: dict, **generate_kwargs) -> tuple[list[str], torch.Tensor]:
    tok = getattr(processor, "tokenizer", processor)
    kwargs = {"max_new_tokens": 64, "do_sample": False, "pad_token_id": tok.pad_token_id} | generate_kwargs
    with torch.no_grad():
        out = model.generate(**batch, **kwargs)
    new = out[:, batch["input_ids"].shape[1]:]
    return tok.batch_decode(new, skip_special_tokens=True), new


def generate_greedy(model, processor, images, prompts, **generate_kwargs) -> Generation:
    """The base decoder (greedy unless generate_kwargs say otherwise): one prefill, one forward per token."""
    batch = to_device(encode(model, processor, images, prompts), model)
    texts, seqs = _decode(processor, model, batch, **generate_kwargs)
    return Generation(texts, seqs)


def generate_vhr(model, processor, images, prompts, alpha: float = 2.0, layers=None, outlier_rule: bool = True,
                 reinforce_text: bool = True, **generate_kwargs) -> Generation:
    """VHR: heads chosen per sample in a lockstep first step, reinforced by alpha for the whole generation."""
    alpha = check_alpha(alpha)
    lay = layout(model)
    layers = resolve_layers(lay, layers)
    n = len(images)
    paired = to_device(encode(model, processor, images, prompts, text_only=True), model)
    found = lockstep(model, paired, n, layers, alpha, outlier_rule=outlier_rule, reinforce_text=reinforce_text)
    factors = torch.where(found.chosen, alpha, 1.0)
    batch = to_device(encode(model, processor, images, prompts), model)
    with scale_heads(model, factors):
        texts, seqs = _decode(processor, model, batch, **generate_kwargs)
    return Generation(texts, seqs, heads=found.chosen, vhd=found.vhd)
