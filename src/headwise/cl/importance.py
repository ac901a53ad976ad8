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


# The reference pads a task's whole buffer to its longest sample, rounded up to a multiple of 8 (jinghan1he/SEEKR
# @ 22fe447, training/seekr.py:104-110: DataCollator(padding="longest", pad_to_multiple_of=8), one batch of the
# whole buffer at 119-123), and scores each sample on that padded square (`CLConfig.importance_padding`).
PAD_MULTIPLE = 8


def buffer_length(lengths: Iterable[int]) -> int:
    """The length the reference pads a buffer of samples of these lengths to."""
    longest = max(lengths)
    return -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE


def padded_mask(n: int, total: int, device) -> torch.Tensor:
    """Additive float32 [1, 1, total, total] mask for one sample left-padded from n to total tokens, with the
    attention transformers 4.31's mask gives (the reference's, utils/llama_flash_att.py:410-431): a valid token
    attends causally to the valid tokens. A pad token's row is masked everywhere, by the finite minimum where one
    of the causal and padding masks holds (the pad keys up to it, every valid key) and by -inf where both do (the
    later pad keys), so its softmax is uniform over the former: the scores vanish next to the minimum. That fixes
    the pad tokens' hidden states, and so the values on the pad keys whose gradients the reference averages in.
    Here half the minimum stands for 4.31's finite minimum (any score added to it still rounds to it) and the
    minimum for its -inf, since headwise's eager path clamps the masked scores to the minimum."""
    lowest = torch.finfo(torch.float32).min
    q = torch.arange(total, device=device)
    valid = q >= total - n
    causal = q[None, :] <= q[:, None]
    allowed = causal & valid[None, :] & valid[:, None]
    uniform = ~valid[:, None] & (causal | valid[None, :])
    mask = torch.full((total, total), lowest, device=device)
    mask[allowed] = 0.0
    mask[uniform] = lowest / 2
    return mask[None, None]


def sensitivity_and_maps(model, ids: list[int], labels: list[int], rows: list[int] | None, masked: bool,
                         padded: int | None = None, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One sample's per-head mean squared gradient of the CE loss w.r.t. the attention probabilities.

    Returns (sensitivity [layers, heads] before per-layer normalisation, the maps [layers, heads, rows,
    keys] float32, the logits [n, vocab] float32). Gradients are taken with autograd.grad on the
    probabilities only, so no parameter's .grad is touched (the original leaked these into the
    optimizer's next step). masked: average over causal entries only; else over all n x n (original).
    padded: left-pad the sample to this length with pad_id first, as the reference does (training/seekr.py:276-279
    runs each sample as a row of the padded buffer); unmasked, the mean then runs over the padded square, the
    gradients on pad keys included (attn_grad_hook, training/seekr.py:244-245). Maps and logits are the valid part.
    """
    lay = layout(model)
    device = next(model.parameters()).device
    n = len(ids)
    pad = 0 if padded is None else padded - n
    if pad < 0:
        raise HeadwiseError(f"a sample of {n} tokens cannot be padded to {padded}.")
    inputs = {"input_ids": torch.tensor([[pad_id] * pad + list(ids)], device=device),
              "labels": torch.tensor([[-100] * pad + list(labels)], device=device)}
    if pad:
        inputs["attention_mask"] = padded_mask(n, padded, device)
    probs: dict[int, torch.Tensor] = {}
    with torch.enable_grad(), edit_attention_scores(model, range(lay.num_layers), lambda s, layer: s,
                                                   on_probs=lambda p, layer: probs.__setitem__(layer, p)):
        out = model(**inputs, use_cache=False)
        order = list(range(lay.num_layers))
        grads = torch.autograd.grad(out.loss, [probs[l] for l in order], allow_unused=True)
    keep = valid_entries(n).to(device) if masked else None
    sens = torch.zeros(lay.num_layers, lay.num_heads)
    for l, g in zip(order, grads):
        if g is None:
            continue
        sq = g[0].float() ** 2  # [heads, n + pad, n + pad]
        sens[l] = (sq[:, pad:, pad:][:, keep].mean(-1) if masked else sq.mean((-1, -2))).cpu()
    maps = torch.stack([_rows(probs[l][0, :, pad:, pad:].detach().float(), rows) for l in order]).cpu()
    return sens, maps, out.logits[0, pad:].detach().float().cpu()


def forgettability(before: torch.Tensor, after: torch.Tensor, padded: int | None = None,
                   every_row: bool = False) -> torch.Tensor:
    """One sample's mean squared change of each head's map: [layers, heads].

    padded: divide as the reference, whose maps are rows of the buffer padded to this length
    (training/seekr.py:364 averages over its padded keys, and with a query budget of 0 over every padded row,
    `every_row`); the pad entries themselves change by exactly 0 there.
    """
    if before.shape != after.shape:
        raise HeadwiseError(f"before/after maps differ in shape: {tuple(before.shape)} vs {tuple(after.shape)}.")
    sq = (before.float() - after.float()) ** 2
    if padded is None:
        return sq.mean((-1, -2))
    return sq.sum((-1, -2)) / ((padded if every_row else sq.shape[-2]) * padded)


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
