"""VHR: choose vision-aware heads in a lockstep first step, then decode with them reinforced.

The lockstep runs the image rows and their image-free twins as one left-padded batch. At each
reinforced layer (in order, inside one forward) a pre-hook on the out-projection compares the two
rows' head outputs at the last position, applies Eq. 6 and 7, and scales the chosen heads by
alpha in both rows before the out-projection, so deeper layers are measured on reinforced states.
The heads are then fixed and `model.generate` decodes the image rows with them scaled.

One prefill: the lockstep's key/value cache of the image rows is exactly the cache that
`generate` would build for them (the heads were fixed layer by layer in the same pass), so it is
carried into `generate`, which then recomputes only the last prompt position. The image rows are
prefilled twice (the lockstep, then again inside `generate`) only where the cache cannot be
carried: models with their own `generate` (InstructBLIP, which rebuilds the prompt from the
pixels), and beam search or several return sequences (the cache would need the beam layout).
When the image rows are padded (prompts of different lengths), the lockstep gets the positions
`generate` would give them (counted from the attention mask); M-RoPE models (Qwen2-VL family)
count them from the mask already, and a model whose forward takes no position ids is prefilled twice.

While decoding, the chosen heads are scaled through the out-projection weights (`scale_heads(fold=True)`)
where one factor row serves the batch and alpha is a power of two (the default 2; other values round
differently in the weights), so the decode steps run no hook; otherwise through hooks.

Ablations (He et al. do not run them; they test what the choice and the placement contribute):
`heads="random"` reinforces as many heads per layer and sample as VHD chose, drawn at random;
`heads="complement"` as many, drawn from those VHD did not choose; `positions="generated"` scales
only the positions that predict output tokens (the last prompt position and each decoded one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headwise.heads import layout, out_proj_pre_hooks, scale_heads, scale_rows, split_heads
from headwise.vhr.config import GreedyConfig, VHRConfig
from headwise.vhr.heads import default_layers, divergence, select_heads
from headwise.vhr.inputs import TOKEN_KEYS, encode, to_device


@dataclass
class Lockstep:
    """What the lockstep prefill found: per sample, layer and head."""

    vhd: torch.Tensor  # [n, layers, heads] float32; zero for layers that were not measured
    chosen: torch.Tensor  # [n, layers, heads] bool
    cache: object | None = None  # the forward's key/value cache (all 2n rows), when asked for


def draw_heads(pick: torch.Tensor, heads: str, generator: torch.Generator) -> torch.Tensor:
    """The heads to reinforce, [batch, heads] bool, given VHD's choice `pick` in one layer.

    vhd: `pick` itself. random: as many heads per row as `pick` holds, drawn from all heads.
    complement: as many, drawn from the heads `pick` leaves out (all of them if there are fewer).
    """
    if heads == "vhd":
        return pick
    pick = pick.cpu()
    out = torch.zeros_like(pick)
    for row in range(pick.shape[0]):
        pool = torch.arange(pick.shape[1]) if heads == "random" else (~pick[row]).nonzero().flatten()
        take = pool[torch.randperm(len(pool), generator=generator)[: int(pick[row].sum())]]
        out[row, take] = True
    return out


def resolve_layers(lay, layers) -> list[int]:
    return default_layers(lay.num_layers) if layers is None else sorted({lay.check_layer(l) for l in layers})


@torch.no_grad()
def lockstep(model, batch: dict, n: int, layers: list[int], alpha: float, measure: list[int] | None = None,
             outlier_rule: bool = True, reinforce_text: bool = True, heads: str = "vhd", positions: str = "all",
             seed: int = 0, keep_cache: bool = False, forward_kwargs: dict | None = None) -> Lockstep:
    """Run the paired batch (n image rows, then n image-free rows) once, choosing and scaling heads layer by layer.

    Args:
        layers: layers to reinforce. measure: layers whose VHD is recorded (default: the reinforced ones).
        reinforce_text: scale the chosen heads in the image-free rows too (the paper's reading).
        heads: which heads to reinforce, an ablation (module docstring). positions: where to scale them, an
            ablation (module docstring). seed: of the random draws, layer by layer, row by row.
        keep_cache: return the forward's key/value cache. forward_kwargs: extra model inputs (position ids).
    """
    lay = layout(model)
    generator = torch.Generator().manual_seed(seed)
    vhd = torch.zeros(n, *lay.shape)
    chosen = torch.zeros(n, *lay.shape, dtype=torch.bool)
    reinforce = set(layers)
    choice = heads

    def make(layer: int):
        def hook(module, args):
            x = args[0]
            heads = split_heads(x[:, -1], lay.num_heads)  # left padding: -1 is every row's last token
            v = divergence(heads[:n], heads[n:])
            vhd[:, layer] = v.cpu()
            if layer not in reinforce:
                return None
            pick = draw_heads(select_heads(v, heads[n:], outlier_rule), choice, generator).to(v.device)
            chosen[:, layer] = pick.cpu()
            f = torch.where(pick, alpha, 1.0)
            rows = torch.cat([f, f if reinforce_text else torch.ones_like(f)])
            return (scale_rows(x, rows, lay.num_heads, positions == "generated"), *args[1:])
        return hook

    with out_proj_pre_hooks(lay, {layer: make(layer) for layer in sorted(reinforce | set(measure or ()))}):
        out = model(**batch, **(forward_kwargs or {}), use_cache=keep_cache)
    cache = (getattr(out, "cache", None) or getattr(out, "past_key_values", None)) if keep_cache else None
    return Lockstep(vhd, chosen, cache)


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


def generate_greedy(model, processor, images, prompts, config: GreedyConfig | None = None, seed: int = 0,
                    **generate_kwargs) -> Generation:
    """The base decoder (greedy unless generate_kwargs say otherwise): one prefill, one forward per token."""
    batch = to_device(encode(model, processor, images, prompts), model)
    texts, seqs = _decode(processor, model, batch, **generate_kwargs)
    return Generation(texts, seqs)


def carry_positions(model, paired: dict, n: int, generate_kwargs: dict) -> dict | None:
    """None when the lockstep's cache of the image rows cannot be handed to `generate` (module docstring);
    otherwise the extra inputs (position ids, or none) that make the lockstep's positions those of `generate`."""
    import inspect

    from transformers import GenerationMixin

    if getattr(type(model), "generate", None) is not GenerationMixin.generate:
        return None
    if generate_kwargs.get("num_beams", 1) != 1 or generate_kwargs.get("num_return_sequences", 1) != 1:
        return None
    if generate_kwargs.get("use_cache", True) is False:
        return None
    mask = paired["attention_mask"]
    if bool(mask[:n].all()) or hasattr(getattr(model, "model", None), "rope_deltas"):
        return {}  # unpadded image rows (positions 0.., as in generate), or M-RoPE: counted from the mask
    if "position_ids" not in inspect.signature(model.forward).parameters:
        return None
    # transformers' generate(): the mask's running count, 0 on padding
    return {"position_ids": (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)}


def _carried_inputs(model, paired: dict, n: int, cache) -> dict | None:
    """`generate` inputs for the image rows that continue from the lockstep's cache, or None if it cannot be cut."""
    import inspect

    try:
        cache.batch_select_indices(torch.arange(n, device=paired["input_ids"].device))
        cache.crop(-1)  # generate() needs one uncached token: it recomputes the last prompt position
    except (AttributeError, ValueError, NotImplementedError):
        return None
    inner = getattr(model, "model", None)
    if getattr(inner, "rope_deltas", None) is not None:  # Qwen2-VL family: M-RoPE offsets of the 2n rows
        inner.rope_deltas = inner.rope_deltas[:n]
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return {key: paired[key][:n] for key in TOKEN_KEYS if key in paired} | {name: cache}


def generate_vhr(model, processor, images, prompts, config: VHRConfig | None = None, seed: int = 0,
                 **generate_kwargs) -> Generation:
    """VHR: heads chosen per sample in a lockstep first step, reinforced by alpha for the whole generation.

    `config` holds the settings and ablations (VHRConfig); seed seeds the random and complement head draws.
    The image rows are prefilled once where the cache can be carried (module docstring).
    """
    cfg = config or VHRConfig()
    alpha, positions = cfg.alpha, cfg.positions
    lay = layout(model)
    layers = resolve_layers(lay, cfg.layers)
    n = len(images)
    paired = to_device(encode(model, processor, images, prompts, text_only=True), model)
    carry = carry_positions(model, paired, n, generate_kwargs)
    found = lockstep(model, paired, n, layers, alpha, outlier_rule=cfg.outlier_rule, reinforce_text=cfg.reinforce_text,
                     heads=cfg.heads, positions=positions, seed=seed, keep_cache=carry is not None,
                     forward_kwargs=carry)
    batch = _carried_inputs(model, paired, n, found.cache) if found.cache is not None else None
    found.cache = None
    if batch is None:
        batch = to_device(encode(model, processor, images, prompts), model)
    factors = torch.where(found.chosen, alpha, 1.0)
    # folded into the out-projection weights where that is the same computation (one image, all positions)
    with torch.no_grad(), scale_heads(model, factors, last_only=positions == "generated", fold=True):
        texts, seqs = _decode(processor, model, batch, **generate_kwargs)
    return Generation(texts, seqs, heads=found.chosen, vhd=found.vhd)
