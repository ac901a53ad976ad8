"""Head importance for SEEKR: forgettability, task sensitivity, and hierarchical selection.

Per task t, on its replay samples: F = mean (A_before - A_after)^2 over samples and (query, key)
entries; S = mean (dL/dA)^2 over samples and entries, normalised to sum to 1 within each layer;
the cumulative importance I += S * F ranks heads for the selection (docs/seekr.md#what-it-computes).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import torch

from headwise.errors import HeadwiseError
from headwise.heads import attention_maps, edit_attention_scores, layout


def query_rows(n: int, budget: int, rng: random.Random, resample: bool) -> list[int] | None:
    """Query positions (sorted, within the unpadded sequence) for one sample; None means all rows.

    The original draws with replacement when the sequence is shorter than the budget, which repeats
    rows (`resample`, `CLConfig.short_queries = "resample"`); otherwise we use every row then.
    """
    if budget <= 0 or (n <= budget and not resample):
        return None
    if n >= budget:
        return sorted(rng.sample(range(n), budget))
    return sorted(rng.choices(range(n), k=budget))


def _rows(t: torch.Tensor, rows: list[int] | None) -> torch.Tensor:
    return t if rows is None else t[..., rows, :]


@torch.no_grad()
def capture_all_maps(model, ids: list[int], rows: list[int] | None) -> torch.Tensor:
    """All heads' attention maps of one sample (batch of 1, no padding): [layers, heads, rows, keys], float32."""
    lay = layout(model)
    device = next(model.parameters()).device
    with attention_maps(model, list(range(lay.num_layers))) as maps:
        model(input_ids=torch.tensor([ids], device=device), use_cache=False)
    return torch.stack([_rows(maps.maps[l][0], rows) for l in range(lay.num_layers)]).cpu()


def valid_entries(n: int) -> torch.Tensor:
    """The causal (query, key) entries of an unpadded sequence: the ones attention can use."""
    return torch.ones(n, n, dtype=torch.bool).tril()


def sensitivity_and_maps(model, ids: list[int], labels: list[int], rows: list[int] | None,
                         masked: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One sample's per-head mean squared gradient of the CE loss w.r.t. the attention probabilities.

    Returns (sensitivity [layers, heads] before per-layer normalisation, the maps [layers, heads, rows,
    keys] float32, the logits [n, vocab] float32). Gradients are taken with autograd.grad on the
    probabilities only, so no parameter's .grad is touched (the original leaked these into the
    optimizer's next step). masked: average over causal entries only; else over all n x n (original).
    """
    lay = layout(model)
    device = next(model.parameters()).device
    probs: dict[int, torch.Tensor] = {}
    with torch.enable_grad(), edit_attention_scores(model, range(lay.num_layers), lambda s, layer: s,
                                                   on_probs=lambda p, layer: probs.__setitem__(layer, p)):
        out = model(input_ids=torch.tensor([ids], device=device), labels=torch.tensor([labels], device=device),
                    use_cache=False)
        order = list(range(lay.num_layers))
        grads = torch.autograd.grad(out.loss, [probs[l] for l in order], allow_unused=True)
    n = len(ids)
    keep = valid_entries(n).to(device) if masked else None
    sens = torch.zeros(lay.num_layers, lay.num_heads)
    for l, g in zip(order, grads):
        if g is None:
            continue
        sq = g[0].float() ** 2  # [heads, n, n]
        sens[l] = (sq[:, keep].mean(-1) if masked else sq.mean((-1, -2))).cpu()
    maps = torch.stack([_rows(probs[l][0].detach().float(), rows) for l in order]).cpu()
    return sens, maps, out.logits[0].detach().float().cpu()


def forgettability(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """One sample's mean squared change of each head's map: [layers, heads]."""
    if before.shape != after.shape:
        raise HeadwiseError(f"before/after maps differ in shape: {tuple(before.shape)} vs {tuple(after.shape)}.")
    return ((before.float() - after.float()) ** 2).mean((-1, -2))


def normalize_layers(s: torch.Tensor) -> torch.Tensor:
    """Each layer's row sums to 1 (a zero row stays zero)."""
    total = s.sum(-1, keepdim=True)
    return torch.where(total > 0, s / total.clamp_min(1e-30), torch.zeros_like(s))


def select_heads(importance: torch.Tensor, layer_budget: float, head_budget: float) -> dict[int, list[int]]:
    """Hierarchical selection: the B_L layers with the largest summed importance, then the B_H
    largest heads among those layers (so heads per layer vary). Ties go to the lower index."""
    num_layers, num_heads = importance.shape
    n_layers = budget_count(layer_budget, num_layers, "layer")
    n_heads = budget_count(head_budget, num_layers * num_heads, "head")
    if n_heads > n_layers * num_heads:
        raise HeadwiseError(f"the head budget {n_heads} is larger than the {n_layers * num_heads} heads "
                            f"of the {n_layers} layers the layer budget keeps.")
    imp = importance.double()
    sums = imp.sum(-1).tolist()
    layers = sorted(range(num_layers), key=lambda l: (-sums[l], l))[:n_layers]
    cells = sorted(((l, h) for l in layers for h in range(num_heads)), key=lambda c: (-imp[c].item(), c))[:n_heads]
    chosen: dict[int, list[int]] = {}
    for l, h in sorted(cells):
        chosen.setdefault(l, []).append(h)
    return chosen


def as_marks(selection: dict[int, Iterable[int]]) -> list[tuple[int, int]]:
    return [(l, h) for l, hs in selection.items() for h in hs]


def budget_count(budget: float, total: int, what: str) -> int:
    """A budget given as a fraction (< 1) or a count (>= 1), as a count; refuse more than the model has."""
    count = max(1, round(budget * total)) if budget < 1 else int(budget)
    if budget >= 1 and budget != int(budget):
        raise HeadwiseError(f"the {what} budget must be a fraction below 1 or a whole count, got {budget}.")
    if count > total:
        raise HeadwiseError(f"the {what} budget {count} is larger than the model's {total} {what}s.")
    return count
