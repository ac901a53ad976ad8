"""Reading and scaling per-head outputs at the input of each layer's out-projection.

The out-projection's input is the concatenation of the heads' outputs after attention, whatever
attention backend ran, so one forward pre-hook there serves every family and backend, during
`generate()` too (each decode step the hook sees one new position).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from collections import Counter
from contextlib import contextmanager

import torch

from headwise.heads.layout import HeadLayout, InvalidHeadsError, layout


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    return x.reshape(*x.shape[:-1], num_heads, x.shape[-1] // num_heads)


@contextmanager
def out_proj_pre_hooks(lay: HeadLayout, hooks: Mapping[int, callable]) -> Iterator[None]:
    """Install forward pre-hooks on the out-projections of the given layers; removed on exit."""
    handles = []
    try:
        for layer, hook in hooks.items():
            handles.append(lay.out_projs[layer].register_forward_pre_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


class HeadCapture:
    """Per-head outputs, `.outputs[layer]` shaped [batch, positions, heads, head_dim], from the latest forward.

    With `history=True`, `.history[layer]` lists the outputs of every forward (one per decode step
    inside `generate()`).
    """

    def __init__(self, layers: list[int], history: bool):
        self.layers = layers
        self.outputs: dict[int, torch.Tensor] = {}
        self.history: dict[int, list[torch.Tensor]] | None = {layer: [] for layer in layers} if history else None


def _check_layers(lay: HeadLayout, layers: Iterable[int] | None) -> list[int]:
    if layers is None:
        return list(range(lay.num_layers))
    return sorted({lay.check_layer(layer) for layer in layers})


@contextmanager
def capture_heads(model, layers: Iterable[int] | None = None, last_only: bool = False,
                  detach: bool = True, history: bool = False) -> Iterator[HeadCapture]:
    """Record each head's output (the out-projection's input split into heads).

    Args:
        model: any supported model.
        layers: layer indices to record; all layers when None.
        last_only: keep only the last position, for long prompts where only the next token matters.
        detach: drop the autograd graph (set False to backpropagate through the captured outputs).
        history: also keep the outputs of every forward, not only the latest.

    The capture sees the out-projection's input as it arrives, after any `scale_heads` entered before it.
    """
    lay = layout(model)
    capture = HeadCapture(_check_layers(lay, layers), history)

    def make_hook(layer: int):
        def hook(module, args):
            x = args[0][:, -1:] if last_only else args[0]
            x = split_heads(x.detach() if detach else x, lay.num_heads)
            capture.outputs[layer] = x
            if capture.history is not None:
                capture.history[layer].append(x)
        return hook

    with out_proj_pre_hooks(lay, {layer: make_hook(layer) for layer in capture.layers}):
        yield capture


FactorSpec = Mapping[int, Mapping[int, float]] | torch.Tensor


def normalize_factors(lay: HeadLayout, factors: FactorSpec) -> dict[int, torch.Tensor]:
    """Turn any accepted factor spec into {layer: tensor [heads] or [batch, heads]}, dropping all-ones layers."""
    if isinstance(factors, Mapping):
        out = {}
        for layer, per_head in factors.items():
            layer = lay.check_layer(layer)
            if not isinstance(per_head, Mapping):
                raise InvalidHeadsError(f"factors for layer {layer} must be a {{head: factor}} mapping, got {type(per_head).__name__}.")
            row = out.setdefault(layer, torch.ones(lay.num_heads))
            for head, factor in per_head.items():
                row[lay.check_head(head)] = float(factor)
    elif isinstance(factors, torch.Tensor):
        shape = tuple(factors.shape)
        if shape == lay.shape:
            out = {layer: factors[layer] for layer in range(lay.num_layers)}
        elif factors.dim() == 3 and shape[1:] == lay.shape:
            out = {layer: factors[:, layer] for layer in range(lay.num_layers)}
        else:
            raise InvalidHeadsError(
                f"factors of shape {list(shape)} do not fit {lay.model_class}: expected [layers, heads] = "
                f"{list(lay.shape)} or [batch, {lay.num_layers}, {lay.num_heads}]."
            )
    else:
        raise InvalidHeadsError(f"factors must be a {{layer: {{head: factor}}}} mapping or a tensor, got {type(factors).__name__}.")
    return {layer: f.detach().float() for layer, f in out.items() if not bool((f == 1).all())}


def scale_rows(x: torch.Tensor, factors: torch.Tensor, num_heads: int, last_only: bool = False) -> torch.Tensor:
    """Scale the heads of an out-projection input x [batch, positions, heads * head_dim].

    factors: [heads] for every row, or [batch, heads] per row. last_only: scale the last position
    only. Out of place, so other hooks and autograd keep the original.
    """
    if last_only:
        return torch.cat([x[:, :-1], scale_rows(x[:, -1:], factors, num_heads)], dim=1)
    g = factors.to(device=x.device, dtype=x.dtype)
    g = g.view(1, 1, num_heads, 1) if g.dim() == 1 else g.view(g.shape[0], 1, num_heads, 1)
    return (split_heads(x, num_heads) * g).reshape(x.shape)


def _expand_batch(f: torch.Tensor, batch: int) -> torch.Tensor:
    # generate() repeats each sample for beams / num_return_sequences with repeat_interleave.
    if f.shape[0] == batch:
        return f
    if batch % f.shape[0]:
        raise InvalidHeadsError(f"per-sample factors were given for a batch of {f.shape[0]}, but the model ran a batch of {batch}.")
    return f.repeat_interleave(batch // f.shape[0], dim=0)


def _foldable(lay: HeadLayout, layer: int) -> bool:
    """Whether scaling this out-projection's weight columns is the same computation as scaling its input."""
    proj = lay.out_projs[layer]
    if type(proj) is not torch.nn.Linear and type(proj).__name__ != "Conv1D":
        return False  # PEFT wrappers (an adapter reads the input too), quantized and custom layers
    weight = proj.weight
    if type(weight.data) is not torch.Tensor or weight.is_meta or not weight.is_floating_point():
        return False  # DTensor (FSDP2), quantized parameters, offloaded or not yet materialized weights
    if hasattr(proj, "_hf_hook"):
        return False  # Accelerate moves the weights in for each forward (offloading)
    return tuple(lay.out_weight(layer).shape[1:]) == (lay.num_heads * lay.head_dim,)  # not a ZeRO-3 placeholder


def _exact_factors(f: torch.Tensor) -> bool:
    """Whether W (g x) and (W g) x round alike: every factor is 1, 0 or +-2^k (1.5 would round differently)."""
    f = f[(f != 0) & (f != 1)].double()
    return bool(torch.isfinite(f).all()) and bool((torch.frexp(f).mantissa.abs() == 0.5).all())


def _autocast_on(devices: set[str]) -> bool:
    # Autocast caches a cast copy of each weight for its whole region, so in-place scaling would be
    # missed (a copy made before) or outlive the fold (a copy made inside).
    for device in devices | {"cpu", "cuda"}:
        try:
            if torch.is_autocast_enabled(device):
                return True
        except RuntimeError:  # a device type autocast does not know
            continue
    return False


def _fold_plan(model, lay: HeadLayout, per_layer: dict[int, torch.Tensor]) -> dict[int, torch.Tensor] | None:
    """{layer: factors [heads]} when every out-projection can take its factors into its weight, else None."""
    if torch.is_grad_enabled():
        return None  # a backward pass would differentiate (and an optimizer update) the scaled weights
    plan = {}
    for layer, f in per_layer.items():
        if f.dim() == 2:
            if not bool((f == f[:1]).all()):
                return None  # a different intervention per sample
            f = f[0]
        if not _exact_factors(f):
            return None
        plan[layer] = f
    if not all(_foldable(lay, layer) for layer in plan):
        return None
    if _autocast_on({lay.out_projs[layer].weight.device.type for layer in plan}):
        return None
    # A weight that any other module (in the plan or not) also uses would be scaled for it too.
    uses = Counter(p.data_ptr() for _, p in model.named_parameters(remove_duplicate=False))
    if any(uses[lay.out_projs[layer].weight.data_ptr()] > 1 for layer in plan):
        return None
    return plan


@contextmanager
def _folded(lay: HeadLayout, plan: dict[int, torch.Tensor]) -> Iterator[None]:
    """Scale the heads' input columns of the out-projection weights in place; put the saved columns back on exit."""
    saved = []
    try:
        with torch.no_grad():
            for layer, f in plan.items():
                weight = lay.out_weight(layer)  # a view [out, heads * head_dim], Conv1D included
                heads = (f != 1).nonzero().flatten()
                cols = (heads[:, None] * lay.head_dim + torch.arange(lay.head_dim, device=heads.device)).flatten().to(weight.device)
                saved.append((weight, cols, weight[:, cols].clone()))
                g = f[heads].repeat_interleave(lay.head_dim).to(device=weight.device, dtype=weight.dtype)
                weight[:, cols] = weight[:, cols] * g
        yield
    finally:
        with torch.no_grad():
            for weight, cols, columns in saved:
                weight[:, cols] = columns


@contextmanager
def scale_heads(model, factors: FactorSpec, last_only: bool = False, fold: bool = False) -> Iterator[None]:
    """Multiply each head's output by a factor before the out-projection; 0 ablates the head.

    Args:
        model: any supported model.
        factors: `{layer: {head: factor}}`, a tensor [layers, heads], or a tensor [batch, layers, heads]
            for a different intervention per sample (repeated to match beams or return sequences).
        last_only: scale only the last position of each forward: in `generate()` the positions that
            predict output tokens (the last prompt position, then each new one).
        fold: for inference, scale the matching input columns of the out-projection weights in place
            for the duration, instead of a hook on every forward (which costs about 2% of a decode
            step on emoji-llava), and put the saved columns back on exit, bit for bit. Taken only where
            it is the same computation, bit for bit: gradients off and autocast off, one factor row for
            the whole batch, every position (not last_only), factors that are 0 or +-2^k (2 and 0.5
            fold; 1.5 rounds differently in the weights, so it runs the hooks), and plain nn.Linear or
            Conv1D out-projections that hold their own full weights (not PEFT-wrapped, quantized,
            sharded, offloaded, or shared with any other module). Anywhere else the hooks run. Hooks
            installed before see what they would see under the hooks (the unscaled heads); inside, the
            weights hold the factors, so a `capture_heads` entered inside sees the unscaled heads too.
            Inside the context do not turn gradients on, and do not use the model from another thread.

    The out-projection's bias, shared by all heads, is left as it is. Equivalent to scaling the
    matching input columns of the out-projection weight.
    """
    lay = layout(model)
    per_layer = normalize_factors(lay, factors)
    plan = _fold_plan(model, lay, per_layer) if fold and not last_only else None
    if plan is not None:
        with _folded(lay, plan):
            yield
        return
    cache: dict[tuple, torch.Tensor] = {}

    def make_hook(layer: int, f: torch.Tensor):
        def hook(module, args):
            x = args[0]
            key = (layer, x.shape[0], x.device, x.dtype)
            if key not in cache:
                cache[key] = (_expand_batch(f, x.shape[0]) if f.dim() == 2 else f).to(device=x.device, dtype=x.dtype)
            return (scale_rows(x, cache[key], lay.num_heads, last_only), *args[1:])
        return hook

    with out_proj_pre_hooks(lay, {layer: make_hook(layer, f) for layer, f in per_layer.items()}):
        yield
