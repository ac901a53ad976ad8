"""What Wanda and SparseGPT share: one sparsity ratio per decoder block, applied in place to the block's linear
layers, only where a block's ratio changed, with the dense weights kept aside so restoring is an exact copy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from headwise.compress.calibration import block_linears
from headwise.compress.config import nm_pattern
from headwise.errors import HeadwiseError


def group_rank(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """0 for the n lowest entries of every group of m consecutive columns, m for the others: `rank < n` is the N:M
    mask. Chosen by torch.topk(largest=False) as locuslab/wanda's lib/prune.py:171-174 does, so that ties break
    as there (a stable sort broke one tie differently in block 4 of SmolLM2, and sequential pruning carried it
    to 0.7% of the masks)."""
    groups = score.reshape(-1, m)
    rank = torch.full(groups.shape, m, dtype=torch.int16, device=score.device)
    rank.scatter_(1, torch.topk(groups, n, dim=1, largest=False)[1], 0)
    return rank.reshape(score.shape)


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

    @classmethod
    def of(cls, name: str, mod: nn.Module, copy: bool = True) -> "Linear":
        """The prunable view of a linear module; `copy=False` shares its weight (enough to read shapes)."""
        return cls(name, mod, mod.weight.data.clone() if copy else mod.weight.data, type(mod).__name__ == "Conv1D")

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


def check_pattern(model, pattern: str) -> None:
    """Refuse an N:M pattern whose M does not divide the input width of every prunable linear."""
    nm = nm_pattern(pattern)
    for b, linears in enumerate(block_linears(model) if nm else []):
        for name, mod in linears:
            width = Linear.of(name, mod, copy=False).in_features
            if width % nm[1]:
                raise HeadwiseError(f"the {pattern} pattern needs input widths divisible by {nm[1]}, but block {b} "
                                    f"linear {name!r} has {width} inputs.")


def statistic(stats: list[dict[str, torch.Tensor]], b: int, name: str, what: str) -> torch.Tensor:
    """The cached calibration statistic of block b's linear `name`, or a clear error when it is missing."""
    if b >= len(stats) or name not in stats[b]:
        raise HeadwiseError(f"the calibration statistics lack the {what} of block {b} linear {name!r}; they were "
                            "collected on a different model or for another pruning method.")
    return stats[b][name]


class BlockPruner:
    """Base of the unstructured pruners: subclasses implement `_prune_block(b, ratio)` for ratio > 0.

    With an N:M `pattern` (`CalibConfig.pattern`) every block with a ratio above 0 is pruned n of every m
    consecutive input weights of each row, whatever its ratio: the pattern fixes the sparsity at n/m.
    """

    def __init__(self, model, rounding: str = "nearest", pattern: str = "unstructured"):
        self.rounding = rounding  # how a ratio becomes a count of pruned weights per row (`Linear.pruned_per_row`)
        self.nm = nm_pattern(pattern)
        self.blocks: list[list[Linear]] = [
            [Linear.of(name, mod) for name, mod in linears]
            for linears in block_linears(model)]
        self.current = [0.0] * len(self.blocks)
        check_pattern(model, pattern)

    def per_row(self, e: Linear, ratio: float) -> int:
        """Weights pruned per row of linear e at `ratio`: n per group of m with an N:M pattern."""
        if self.nm:
            return self.nm[0] * (e.in_features // self.nm[1]) if ratio > 0 else 0
        return e.pruned_per_row(ratio, self.rounding)

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
                pruned += self.per_row(e, self.current[b]) * e.out_features
                total += e.in_features * e.out_features
        return pruned / total if total else 0.0

    def restore(self) -> None:
        """Put every dense weight back, bit for bit."""
        self.apply([0.0] * self.num_blocks)
