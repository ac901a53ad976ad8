"""SparseGPT (Frantar and Alistarh, ICML 2023) applied with one sparsity ratio per decoder block, from cached
Hessians, with exact restore.

Per linear layer with calibration inputs X: H = 2 X^T X / tokens (cached by calibration) plus 1% of its mean
diagonal, and U the upper Cholesky factor of H^-1. Columns are processed left to right in blocks of 128.
Pruning weight w_q costs w_q^2 / U_qq^2, and its error is compensated on the later weights of its row by OBS,
delta = -(w_q / U_qq) U_{q, q:}, applied lazily per column block as in the reference. Rows are independent given
U, so linears that share an input (q/k/v, gate/up) share U (one factorisation); with the row mask they are
pruned as one stacked matrix.

The mask is chosen when a column block is reached, as in the reference: one threshold over the block of one
linear (`mask="block"`, the default), so rows differ in their counts. `mask="row"` (headwise's default before
2026-12-05) gives every row exactly round(s * in_features) zeros, Wanda's count: the prunes a row still owes go to
its lowest-cost columns among all columns not yet processed, those inside the current block now. On SmolLM2 at
50% it cost 11% more held-out perplexity than the block threshold (docs/parity.md), hence the default.

One choice of ours:
- Deviation: one-shot inputs. Every layer's Hessian comes from the dense model's inputs, collected once. The
  reference prunes blocks sequentially and feeds each block the pruned model's outputs. That would need a new
  calibration pass per strategy, which UniCuCo's "calibrate once, apply any strategy" rules out.

Applying a strategy recomputes only the blocks whose ratio changed. Each block also keeps its last pruned
weights (one extra copy of the block weights), so re-applying a ratio after `restore` is a copy. Every true
evaluation restores, and an evolutionary search changes only a few blocks at a time.
"""

from __future__ import annotations

import torch

from headwise.compress.unstructured import BlockPruner, Linear, row_rank, statistic
from headwise.errors import HeadwiseError

BLOCKSIZE = 128
DAMP = 0.01


def inverse_factor(hessian: torch.Tensor, damp: float = DAMP) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, dead): U the upper Cholesky factor of (H + damp * mean(diag H) * I)^-1.

    `dead` marks inputs that were always zero. Their diagonal is set to 1 so that H stays invertible, and their
    weights are pruned, as in the reference.
    """
    h = hessian.clone()
    dead = h.diagonal() == 0
    h.diagonal()[dead] = 1
    # The mean of a contiguous copy of the diagonal, as the reference's torch.mean(torch.diag(H)): the strided
    # view sums in another order, and that last bit of the dampening changed 88 of 2:4 SparseGPT's mask entries
    # in SmolLM2's first block (near-ties inside N:M groups).
    h.diagonal().add_(damp * torch.diag(h).mean())
    try:
        low = torch.linalg.cholesky(h)
    except torch.linalg.LinAlgError as err:
        raise HeadwiseError("a calibration Hessian is not positive definite even after dampening; "
                            "calibrate on more tokens.") from err
    return torch.linalg.cholesky(torch.cholesky_inverse(low), upper=True), dead


def prune(weight: torch.Tensor, u: torch.Tensor, dead: torch.Tensor, k: int, blocksize: int = BLOCKSIZE,
          mask: str = "block", ratio: float = 0.0, nm: tuple[int, int] | None = None) -> torch.Tensor:
    """SparseGPT on one [out, in] weight (one linear, or with mask "row" linears sharing U stacked by rows); the
    rest of each row is updated; the result is in U's dtype.

    Which weights go, as each column block is reached:
    - mask "block" (the default): the reference's, lib/sparsegpt.py:84-86: every weight of the block whose cost is
      at most the int(numel * ratio)-th smallest cost of the block (so `weight` must be one linear);
    - mask "row": exactly k per row, the lowest-cost among the row's columns not yet processed (module docstring);
    - nm (n, m): the reference's N:M, lib/sparsegpt.py:94-96: at every m-th column of a block the n lowest-cost
      weights of each row among the next m columns, costs taken on the weights as updated so far.
    """
    w = weight.to(u.dtype).clone()
    w[:, dead] = 0
    cols = w.shape[1]
    due = torch.full((w.shape[0], 1), k, device=w.device)  # prunes each row still owes ("row")
    cost_scale = u.diagonal().pow(2)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        u1, w1 = u[i1:i2, i1:i2], w[:, i1:i2]  # w1 is a view: updating it updates w
        if nm is not None:
            chosen = torch.zeros_like(w1, dtype=torch.bool)
        elif mask == "block":
            chosen = block_threshold(w1.pow(2) / cost_scale[i1:i2], ratio)
        else:
            rank = row_rank(w[:, i1:].pow(2) / cost_scale[i1:])
            chosen = (rank < due)[:, :i2 - i1]
            due = due - chosen.sum(1, keepdim=True)
        err = torch.zeros_like(w1)
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                cost = w1[:, i:i + nm[1]].pow(2) / cost_scale[i1 + i:i1 + i + nm[1]]
                chosen.scatter_(1, i + torch.topk(cost, nm[0], dim=1, largest=False)[1], True)
            err[:, i] = torch.where(chosen[:, i], w1[:, i], 0) / u1[i, i]
            w1[:, i + 1:] -= err[:, i, None] * u1[i, i + 1:]
            w1[:, i] = torch.where(chosen[:, i], 0, w1[:, i])
        w[:, i2:] -= err @ u[i1:i2, i2:]
    return w


def block_threshold(cost: torch.Tensor, ratio: float) -> torch.Tensor:
    """The reference's mask of one linear's column block: cost <= the int(numel * ratio)-th smallest cost."""
    thresh = torch.sort(cost.flatten())[0][int(cost.numel() * ratio)]
    return cost <= thresh


class SparseGPTPruner(BlockPruner):
    """Prune a model's decoder blocks in place to per-block ratios by SparseGPT, and restore them exactly.

    Args:
        model: the dense model (its weights are modified in place by `apply`).
        hessians: per block, linear name -> Hessian, where linears with the same input hold the same tensor
            (`Calibration.hessians`, collected with method "sparsegpt").
        blocksize: columns per lazy-update block.
        rounding: how a ratio becomes a count of weights pruned per row (`Linear.pruned_per_row`).
        mask: "block" (the reference's one threshold per column block of a linear, which ignores `rounding`) or
            "row" (exactly the rounded count in every row); see `prune` (`CalibConfig.sparsegpt_mask`).
        pattern: "unstructured" or "N:M" (`CalibConfig.pattern`).
    """

    def __init__(self, model, hessians: list[dict[str, torch.Tensor]] | None, blocksize: int = BLOCKSIZE,
                 rounding: str = "nearest", mask: str = "block", pattern: str = "unstructured"):
        if hessians is None:
            raise HeadwiseError("SparseGPT needs the Hessians that calibration collects only with method "
                                "'sparsegpt'; these statistics were collected for Wanda.")
        super().__init__(model, rounding, pattern)
        self.blocksize, self.mask = blocksize, mask
        self.hessians = hessians
        # Per block: (Hessian, the linears that read its input), found when the block is first pruned (sequential
        # calibration fills a block's Hessians just before).
        self.groups: list[list[tuple[torch.Tensor, list[Linear]]] | None] = [None] * self.num_blocks
        self.cache: list[tuple[float, list[torch.Tensor]] | None] = [None] * self.num_blocks
        # The inverse factor depends on the Hessian alone, so every ratio tried for a block reuses it.
        self.factors: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _prune_block(self, b: int, ratio: float) -> None:
        if self.cache[b] is None or self.cache[b][0] != ratio:
            self.cache[b] = (ratio, self._pruned(b, ratio))
        for e, w in zip(self.blocks[b], self.cache[b][1]):
            e.write(w)

    def _pruned(self, b: int, ratio: float) -> list[torch.Tensor]:
        """Block b's weights pruned to `ratio`, each in its module's layout and dtype."""
        if self.groups[b] is None:
            shared: dict[int, tuple[torch.Tensor, list[Linear]]] = {}
            for e in self.blocks[b]:
                h = statistic(self.hessians, b, e.name, "Hessian")
                shared.setdefault(id(h), (h, []))[1].append(e)
            self.groups[b] = list(shared.values())
        out: dict[str, torch.Tensor] = {}
        for h, entries in self.groups[b]:
            w = torch.cat([e.out_in(e.dense) for e in entries])
            k = self.per_row(entries[0], ratio)
            parts = w.split([e.out_features for e in entries])
            if k:
                if id(h) not in self.factors:
                    self.factors[id(h)] = inverse_factor(h.to(w.device, torch.promote_types(w.dtype, torch.float32)))
                # The block mask thresholds each linear on its own, and the reference's float rounding needs each
                # linear's own matrix products: "block" prunes the linears one by one, "row" stacked (faster).
                parts = ([prune(p, *self.factors[id(h)], k, self.blocksize, self.mask, ratio, self.nm) for p in parts]
                         if self.mask == "block" else
                         prune(w, *self.factors[id(h)], k, self.blocksize, self.mask, ratio, self.nm)
                         .split([e.out_features for e in entries]))
            for e, part in zip(entries, parts):
                out[e.name] = e.out_in(part).to(e.dense.dtype)
        return [out[e.name] for e in self.blocks[b]]
