"""The two objectives of a strategy (size kept, KL from the dense model), their weighted Tchebycheff
scalarisation, and `Evaluator`, which applies a strategy, measures it and restores the dense model."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager

import torch

from headwise.compress.calibration import Calibration
from headwise.compress.config import CalibConfig, check_method, check_ratios, check_space
from headwise.compress import sequential
from headwise.compress.depth import DepthPruner
from headwise.compress.sparsegpt import SparseGPTPruner
from headwise.compress.wanda import WandaPruner
from headwise.errors import HeadwiseError
from headwise.eval.perplexity import perplexity


def size_kept(x: torch.Tensor) -> torch.Tensor:
    """f1: the fraction of block weights kept, 1 - mean_i x_i (blocks of one model have equal size)."""
    return 1.0 - x.mean(-1)


def tchebycheff(f: torch.Tensor, pref: torch.Tensor, ideal: torch.Tensor, augment: float = 0.01) -> torch.Tensor:
    """Weighted (augmented) Tchebycheff: max_i pref_i (f_i - z_i) + augment * sum_i pref_i (f_i - z_i).

    The small augmentation breaks ties on flat parts of the max, so both objectives keep receiving gradient.
    """
    gap = pref * (f - ideal)
    return gap.max(-1).values + augment * gap.sum(-1)


@torch.no_grad()
def mean_kl(model, ids: torch.Tensor, dense_logp: torch.Tensor, batch_size: int = 2) -> float:
    """Mean over tokens of KL(dense || model) of the next-token distributions."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(ids), batch_size):
        logits = model(input_ids=ids[start:start + batch_size].to(device), use_cache=False).logits
        logq = torch.log_softmax(logits.float(), -1).cpu()
        logp = dense_logp[start:start + batch_size]
        kl = (logp.exp() * (logp - logq)).sum(-1)
        total += kl.sum().item()
        count += kl.numel()
    return total / count


# The unstructured pruners by name, one registration line each: (model, calibration statistics, rounding,
# pattern, SparseGPT mask) -> a pruner with apply(ratios) / restore(). `--method` and the StratNet's recorded
# method read this table.
PRUNERS: dict[str, Callable] = {
    "wanda": lambda model, calib, rounding, pattern="unstructured", mask="block":
        WandaPruner(model, calib.norms, rounding, pattern),
    "sparsegpt": lambda model, calib, rounding, pattern="unstructured", mask="block":
        SparseGPTPruner(model, calib.hessians, rounding=rounding, mask=mask, pattern=pattern),
}


def make_pruner(model, calib: Calibration, space: str = "unstructured", method: str = "wanda",
                rounding: str = "nearest", pattern: str = "unstructured", mask: str = "block"):
    """The one place that picks the pruner: blocks removed (depth), or per-block ratios applied by the registered
    `method` from the cached statistics (unstructured)."""
    check_space(space)
    if space == "depth":
        return DepthPruner(model)
    check_method(method)
    return PRUNERS[method](model, calib, rounding, pattern, mask)


class Evaluator:
    """True evaluation of strategies on one model: apply, measure, restore.

    Args:
        model: the dense model; it is modified while a strategy is applied and restored afterwards.
        calib: the cached calibration statistics.
        space: "unstructured" (per-block sparsity ratios) or "depth" (0/1 per block, 1 = removed).
        batch_size: windows per forward pass.
        method: the unstructured pruner, "wanda" or "sparsegpt" (`CalibConfig.method`).
        heldout: (ids, dense log-probs) of windows that `measure` reports KL on instead of the calibration
            windows (`calibration.heldout`); `kl`, what a fit or a search optimises, stays on the calibration ones.
        rounding: how a ratio becomes a count of pruned weights per row (`CalibConfig.rounding`).
        inputs: "dense" (the cached statistics serve every strategy) or "sequential" (each strategy is pruned
            block after block from the pruned blocks' outputs, `sequential.prune`; `CalibConfig.inputs`).
        pattern: "unstructured" or "N:M" (`CalibConfig.pattern`).
        mask: SparseGPT's mask choice, "block" or "row" (`CalibConfig.sparsegpt_mask`).
    """

    def __init__(self, model, calib: Calibration, space: str = "unstructured", batch_size: int = 2,
                 method: str = "wanda", heldout: tuple[torch.Tensor, torch.Tensor] | None = None,
                 rounding: str = "nearest", inputs: str = "dense", pattern: str = "unstructured",
                 mask: str = "block"):
        self.model, self.calib, self.space, self.batch_size = model, calib, space, batch_size
        self.heldout = heldout
        self.method, self.rounding, self.pattern, self.mask = method, rounding, pattern, mask
        self.sequential = inputs == "sequential" and space == "unstructured"
        self.pruner = make_pruner(model, calib, space, method, rounding, pattern, mask)
        self.num_blocks = self.pruner.num_blocks
        self.evaluations = 0
        self.seconds = 0.0

    @classmethod
    def for_config(cls, model, calib: Calibration, space: str, config: CalibConfig,
                   heldout: tuple[torch.Tensor, torch.Tensor] | None = None) -> Evaluator:
        """The evaluator a fit or a StratNet's calibration settings ask for (batch size, pruner, rounding)."""
        return cls(model, calib, space, config.batch_size, config.method, heldout, config.rounding, config.inputs,
                   config.pattern, config.sparsegpt_mask)

    def check(self, strategy) -> list[float]:
        x = check_ratios(strategy, self.num_blocks)
        if self.space == "depth" and any(v not in (0.0, 1.0) for v in x):
            raise HeadwiseError("a depth strategy must hold only 0 (keep) and 1 (remove).")
        return x

    @contextmanager
    def applied(self, strategy):
        """The model pruned to `strategy` inside the block; yields the achieved sparsity."""
        x = self.check(strategy)
        pruner = self.pruner
        try:
            if self.sequential:
                pruner = sequential.prune(self.model, self.calib.ids, x, self.method, self.rounding, self.batch_size,
                                          self.pattern, self.mask)
            yield pruner.apply(x)
        finally:
            pruner.restore()

    def kl(self, strategy, windows: int | None = None) -> float:
        """A true evaluation: KL on the first `windows` calibration windows (all when None)."""
        t0 = time.perf_counter()
        n = len(self.calib.ids) if windows is None else windows
        with self.applied(strategy):
            value = mean_kl(self.model, self.calib.ids[:n], self.calib.dense_logp[:n], self.batch_size)
        self.evaluations += 1
        self.seconds += time.perf_counter() - t0
        return value

    def measure_applied(self, ppl: bool = True) -> dict:
        """KL (on the held-out windows when there are some) and (optionally) test perplexity of the model as it
        is now."""
        ids, logp = self.heldout or (self.calib.ids, self.calib.dense_logp)
        kl = mean_kl(self.model, ids, logp, self.batch_size)
        p = perplexity(self.model, self.calib.ppl_ids, self.batch_size) if ppl else None
        return {"kl": kl, "ppl": p}

    def measure(self, strategy, ppl: bool = True) -> dict:
        """Achieved sparsity, KL and (optionally) test perplexity of one strategy."""
        with self.applied(strategy) as sparsity:
            return {"sparsity": sparsity, **self.measure_applied(ppl)}
