"""What Wanda and SparseGPT share: one sparsity ratio per decoder block, applied in place to the block's linear
layers, only where a block's ratio changed, with the dense weights kept aside so restoring is an exact copy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from headwise.compress.calibration import block_linears
from headwise.errors import HeadwiseError


def row_rank(score: torch.Tensor) -> torch.Tensor:
    """Position of each entry in its row's ascending order, ties by column (0 = pruned first)."""
    order = torch.argsort(score, dim=1, stable=True)
    n = score.shape[1]
    dtype = torch.int16 if n < 2**15 else torch.int32
    rank = torch.empty(order.shape, dtype=dtype, device=score.device)
    # A scatter instead of a second argsort: half the time.
    rank.scatter_(1, order, torch.arange(n, dtype=dtype, device=score.device).expand_as(order).contiguous())
    return rank


@dataclass
class Linear:
    name: str
    module: nn.Module
    dense: torch.Tensor  # a copy of the dense weight, in the module's own layout
    conv1d: bool         # GPT-2's Conv1D stores [in, out]

    def out_in(self, t: torch.Tensor) -> torch.Tensor:
        """A tensor of the module's layout as [out, in] (or back: the transpose is its own inverse)."""
        return t.t() if self.conv1d else t

    @property
    def in_features(self) -> int:
        return self.out_in(self.dense).shape[1]

    @property
    def out_features(self) -> int:
        return self.out_in(self.dense).shape[0]

    def pruned_per_row(self, ratio: float, rounding: str = "nearest") -> int:
        """Weights pruned per row at `ratio`. locuslab/wanda truncates, int(in_features * ratio), so it always
        prunes less than asked, by up to one weight per row. We round to the nearest count instead: the searched
        per-block ratios are continuous, and rounding meets each within half a weight per row on either side.
        rounding="floor" truncates as the reference does (`CalibConfig.rounding`)."""
        return int(ratio * self.in_features) if rounding == "floor" else int(round(ratio * self.in_features))

    def write(self, weight: torch.Tensor) -> None:
        """Set the module's weight from a tensor in its own layout."""
        self.module.weight.data.copy_(weight)


def statistic(stats: list[dict[str, torch.Tensor]], b: int, name: str, what: str) -> torch.Tensor:
    """The cached calibration statistic of block b's linear `name`, or a clear error when it is missing."""
    if b >= len(stats) or name not in stats[b]:
        raise HeadwiseError(f"the calibration statistics lack the {what} of block {b} linear {name!r}; they were "
                            "collected on a different model or for another pruning method.")
    return stats[b][name]


class BlockPruner:
    """Base of the unstructured pruners: subclasses implement `_prune_block(b, ratio)` for ratio > 0."""

    def __init__(self, model, rounding: str = "nearest"):
        self.rounding = rounding  # how a ratio becomes a count of pruned weights per row (`Linear.pruned_per_row`)
        self.blocks: list[list[Linear]] = [
            [Linear(name, mod, mod.weight.data.clone(), type(mod).__name__ == "Conv1D") for name, mod in linears]
            for linears in block_linears(model)]
        self.current = [0.0] * len(self.blocks)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def _prune_block(self, b: int, ratio: float) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def apply(self, ratios) -> float:
        """Prune block i to ratio ratios[i] (blocks already at that ratio are left alone).

        Returns the achieved fraction of block weights pruned.
        """
        ratios = [float(r) for r in ratios]
        if len(ratios) != self.num_blocks:
            raise HeadwiseError(f"a strategy needs {self.num_blocks} per-block ratios, got {len(ratios)}.")
        for b, (new, old) in enumerate(zip(ratios, self.current)):
            if new == old:
                continue
            if new == 0.0:
                for e in self.blocks[b]:
                    e.write(e.dense)
            else:
                self._prune_block(b, new)
            self.current[b] = new
        return self.achieved()

    def achieved(self) -> float:
        pruned = total = 0
        for b, entries in enumerate(self.blocks):
            for e in entries:
                pruned += e.pruned_per_row(self.current[b], self.rounding) * e.out_features
                total += e.in_features * e.out_features
        return pruned / total if total else 0.0

    def restore(self) -> None:
        """Put every dense weight back, bit for bit."""
        self.apply([0.0] * self.num_blocks)
