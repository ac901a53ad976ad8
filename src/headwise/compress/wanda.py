"""Wanda applied with one sparsity ratio per decoder block, in seconds, with exact restore.

For every linear layer the per-row rank of each weight under the Wanda score |W_ij| * ||X_j|| is computed once
(from cached input norms). Pruning a row to ratio s then zeroes the round(s * in_features) lowest-ranked
weights, a comparison instead of a sort, and the dense weights are kept aside so restoring is a copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from headwise.compress.calibration import block_linears
from headwise.errors import HeadwiseError


def wanda_rank(weight_out_in: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Position of each weight in its row's ascending Wanda-score order (0 = pruned first)."""
    score = weight_out_in.detach().abs().float() * norm.float()[None, :]
    order = torch.argsort(score, dim=1, stable=True)
    in_features = score.shape[1]
    dtype = torch.int16 if in_features < 2**15 else torch.int32
    rank = torch.empty(order.shape, dtype=dtype)
    rank.scatter_(1, order, torch.arange(in_features, dtype=dtype).expand_as(order).contiguous())
    return rank


@dataclass
class _Linear:
    module: nn.Module
    dense: torch.Tensor      # a copy of the dense weight, in the module's own layout
    rank: torch.Tensor       # Wanda rank in the module's own layout
    in_features: int
    out_features: int


class WandaPruner:
    """Prune a model's decoder blocks in place to per-block ratios, and restore them exactly.

    Args:
        model: the dense model (its weights are modified in place by `apply`).
        norms: per block, linear name -> input-feature L2 norms (`Calibration.norms`).
    """

    def __init__(self, model, norms: list[dict[str, torch.Tensor]]):
        self.blocks: list[list[_Linear]] = []
        for b, linears in enumerate(block_linears(model)):
            entries = []
            for name, mod in linears:
                conv1d = type(mod).__name__ == "Conv1D"
                w = mod.weight.data
                w_oi = w.t() if conv1d else w  # Conv1D stores [in, out]
                if name not in norms[b]:
                    raise HeadwiseError(f"calibration statistics lack block {b} linear {name!r}; "
                                        "they were collected on a different model.")
                rank = wanda_rank(w_oi.cpu(), norms[b][name])
                rank = rank.t().contiguous() if conv1d else rank
                entries.append(_Linear(mod, w.clone(), rank.to(w.device), w_oi.shape[1], w_oi.shape[0]))
            self.blocks.append(entries)
        self.current = [0.0] * len(self.blocks)
        self.block_weights = sum(e.dense.numel() for e in self.blocks[0]) if self.blocks else 0

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @staticmethod
    def kept_per_row(ratio: float, in_features: int) -> int:
        return in_features - int(round(ratio * in_features))

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
            for e in self.blocks[b]:
                k = int(round(new * e.in_features))
                if k == 0:
                    e.module.weight.data.copy_(e.dense)
                else:
                    torch.where(e.rank < k, torch.zeros((), dtype=e.dense.dtype), e.dense,
                                out=e.module.weight.data)
            self.current[b] = new
        return self.achieved()

    def achieved(self) -> float:
        pruned = total = 0
        for b, entries in enumerate(self.blocks):
            for e in entries:
                pruned += int(round(self.current[b] * e.in_features)) * e.out_features
                total += e.in_features * e.out_features
        return pruned / total if total else 0.0

    def restore(self) -> None:
        """Put every dense weight back, bit for bit."""
        self.apply([0.0] * self.num_blocks)
