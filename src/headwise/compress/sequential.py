"""Sequential pruning, as locuslab/wanda (`lib/prune.py`, `prune_wanda` and `prune_sparsegpt`) does it: block i's
statistics are recorded on the inputs that the already pruned blocks 0..i-1 produce, then block i is pruned and
its outputs recomputed for block i+1.

Within a block, every linear's statistic comes from one pass of the still dense block, as in the reference (its
MLP inputs are those of the dense attention, not of the pruned one), and the input norms are accumulated as the
reference rounds them (`Recorder(running_mean=True)`): with that, SmolLM2's masks equal locuslab/wanda's.

The statistics depend on the strategy, so a sequential prune costs one dense pass (to capture what each block is
called with) plus two passes per block over the calibration windows, about three forward passes, for every
strategy: what `CalibConfig.inputs = "sequential"` pays per evaluation instead of UniCuCo's calibrate-once
statistics.
"""

from __future__ import annotations

import torch

from headwise.compress.calibration import Calibration, Recorder, block_linears
from headwise.compress.config import check_method, check_ratios
from headwise.compress.unstructured import BlockPruner
from headwise.heads.layout import layout


class _Stop(Exception):
    """Raised by the last wanted block's hook: the dense pass that captures the blocks' calls need not go on."""


@torch.no_grad()
def block_calls(model, ids: torch.Tensor, batch_size: int,
                last: int | None = None) -> tuple[list[torch.Tensor], list[list[tuple]]]:
    """(the first block's hidden-state input per batch, per block and batch the other (args, kwargs) it is called
    with): attention masks, rotary embeddings and positions, which do not depend on the weights being pruned.
    Recorded per block because some families give blocks different masks (Gemma 3's sliding windows). With
    `last`, the pass stops at block `last`, and later blocks' lists stay empty."""
    layers = layout(model).layers
    last = len(layers) - 1 if last is None else last
    device = next(model.parameters()).device
    hidden: list[torch.Tensor] = []
    calls: list[list[tuple]] = [[] for _ in layers]

    def hook(_m, args, kwargs, b):
        kwargs = dict(kwargs)
        h = args[0] if args else kwargs.pop("hidden_states")
        if b == 0:
            hidden.append(h)
        calls[b].append((args[1:], kwargs))
        if b == last:
            raise _Stop

    handles = [layer.register_forward_pre_hook(lambda m, a, k, b=b: hook(m, a, k, b), with_kwargs=True)
               for b, layer in enumerate(layers)]
    try:
        for start in range(0, len(ids), batch_size):
            try:
                model(input_ids=ids[start:start + batch_size].to(device), use_cache=False)
            except _Stop:
                pass
    finally:
        for h in handles:
            h.remove()
    return hidden, calls


def run_block(layer, hidden: list[torch.Tensor], calls: list[tuple]) -> list[torch.Tensor]:
    """Block `layer`'s outputs on each batch's hidden states, called as `block_calls` recorded it."""
    outs = []
    for h, (args, kwargs) in zip(hidden, calls):
        out = layer(h, *args, **kwargs)
        outs.append(out[0] if isinstance(out, tuple) else out)  # older blocks return (hidden, ...)
    return outs


@torch.no_grad()
def prune(model, ids: torch.Tensor, ratios, method: str = "wanda", rounding: str = "nearest",
          batch_size: int = 2, pattern: str = "unstructured", mask: str = "block") -> BlockPruner:
    """Prune `model` in place to per-block `ratios`, block after block, each from statistics on the outputs of
    the blocks pruned before it.

    Args:
        model: the dense model.
        ids: [windows, seq_len] calibration tokens.
        ratios: one sparsity ratio per decoder block.
        method: a pruner of `compress.objectives.PRUNERS` ("wanda", "sparsegpt").
        rounding: how a ratio becomes a count of pruned weights per row (`Linear.pruned_per_row`).
        batch_size: windows per forward pass.
        pattern: "unstructured" or "N:M" (`CalibConfig.pattern`).
        mask: SparseGPT's mask choice, "block" or "row" (`CalibConfig.sparsegpt_mask`).

    Returns:
        the pruner, with the model pruned; its `restore()` puts the dense weights back.
    """
    from headwise.compress.objectives import PRUNERS

    check_method(method)
    linears = block_linears(model)
    ratios = check_ratios(ratios, len(linears))
    norms: list[dict[str, torch.Tensor]] = [{} for _ in linears]
    hessians = [{} for _ in linears] if method == "sparsegpt" else None
    # The pruner reads a block's statistics when it first prunes it, so they can be filled in as we go.
    pruner = PRUNERS[method](model, Calibration(ids, torch.empty(0), norms, torch.empty(0), hessians), rounding,
                             pattern, mask)
    try:
        # Blocks after the last one pruned stay dense and need no inputs.
        last = max((b for b, r in enumerate(ratios) if r > 0), default=-1)
        if last < 0:
            pruner.apply(ratios)  # nothing to prune: the pruner is left as after any other apply
            return pruner
        hidden, calls = block_calls(model, ids, batch_size, last)
        for b, layer in enumerate(layout(model).layers):
            with Recorder([linears[b]], hessians is not None, running_mean=True) as recorder:
                run_block(layer, hidden, calls[b])
            norms[b].update(recorder.norms()[0])
            if hessians is not None:
                hessians[b].update(recorder.hessians()[0])
            pruner.apply(ratios[:b + 1] + [0.0] * (len(linears) - b - 1))
            if b == last:
                break  # the blocks after this one stay dense: their inputs are not needed
            hidden = run_block(layer, hidden, calls[b])
    except BaseException:
        pruner.restore()  # a half-pruned model must not outlive the error
        raise
    return pruner
