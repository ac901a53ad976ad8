"""Wanda applied with one sparsity ratio per decoder block, in seconds, with exact restore.

For every linear layer the per-row rank of each weight under the Wanda score |W_ij| * ||X_j|| is computed once
(from cached input norms). Pruning a row to ratio s then zeroes the round(s * in_features) lowest-ranked
weights (locuslab/wanda's int() with rounding="floor", see `Linear.pruned_per_row`), a comparison instead of a
sort, and the dense weights are kept aside so restoring is a copy.
"""

from __future__ import annotations

import torch

from headwise.compress.unstructured import BlockPruner, group_rank, row_rank, statistic


def wanda_rank(weight_out_in: torch.Tensor, norm: torch.Tensor, nm: tuple[int, int] | None = None) -> torch.Tensor:
    """Position of each weight in its row's ascending Wanda-score order (0 = pruned first); with nm = (n, m), 0
    for the n lowest of its group of m consecutive columns (`group_rank`)."""
    score = weight_out_in.detach().abs().float() * norm.float()[None, :]
    return group_rank(score, *nm) if nm else row_rank(score)


class WandaPruner(BlockPruner):
    """Prune a model's decoder blocks in place to per-block ratios, and restore them exactly.

    Args:
        model: the dense model (its weights are modified in place by `apply`).
        norms: per block, linear name -> input-feature L2 norms (`Calibration.norms`).
        rounding: "floor" prunes int(ratio * in_features) weights per row as locuslab/wanda does; "nearest" (the
            default) the rounded count.
        pattern: "unstructured" or "N:M": n of every m consecutive weights of a row, the lowest-scored
            (`CalibConfig.pattern`).
    """

    def __init__(self, model, norms: list[dict[str, torch.Tensor]], rounding: str = "nearest",
                 pattern: str = "unstructured"):
        super().__init__(model, rounding, pattern)
        self.norms = norms
        # Ranks are kept in each module's own layout, so pruning is one torch.where on its weight. A block's are
        # computed when it is first pruned: sequential calibration (`sequential.prune`) fills its norms just before.
        self.ranks: list[list[torch.Tensor] | None] = [None] * self.num_blocks

    def _prune_block(self, b: int, ratio: float) -> None:
        if self.ranks[b] is None:
            self.ranks[b] = [e.out_in(wanda_rank(e.out_in(e.dense).cpu(), statistic(self.norms, b, e.name,
                                                                                   "input norms"), self.nm))
                             .contiguous().to(e.dense.device) for e in self.blocks[b]]
        for e, rank in zip(self.blocks[b], self.ranks[b]):
            # Under N:M a rank is 0 for the n weights of each group of m that go (`group_rank`).
            k = self.nm[0] if self.nm else self.per_row(e, ratio)
            torch.where(rank < k, torch.zeros((), dtype=e.dense.dtype), e.dense, out=e.module.weight.data)
