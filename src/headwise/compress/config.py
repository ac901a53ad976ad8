"""Settings of UniCuCo's calibration, fitting and serving (recorded in run directories and StratNets).

Presets: `faithful` prunes as locuslab/wanda does: it counts the weights pruned per row with `int()` and takes each
block's statistics on the outputs of the blocks pruned before it (docs/unicuco.md, docs/parity.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from headwise.config import Settings
from headwise.errors import HeadwiseError

SPACES = ("unstructured", "depth")
ROUNDINGS = ("nearest", "floor")
INPUTS = ("dense", "sequential")
SPARSEGPT_MASKS = ("block", "row")
MAX_SPARSITY = 0.95


def check_ratios(values, num_blocks: int) -> list[float]:
    """A strategy's per-block values as floats: one per block, each in [0, 1] (NaN refused)."""
    x = [float(v) for v in values]
    if len(x) != num_blocks:
        raise HeadwiseError(f"a strategy for this model needs {num_blocks} per-block values, got {len(x)}.")
    if any(not 0 <= v <= 1 for v in x):
        raise HeadwiseError("strategy values must lie in [0, 1].")
    return x


def check_method(method: str) -> None:
    """An unstructured pruner registered in headwise.compress.objectives.PRUNERS (imported on use: torch)."""
    from headwise.compress.objectives import PRUNERS

    if method not in PRUNERS:
        raise HeadwiseError(f"unknown pruning method {method!r}; use one of {', '.join(PRUNERS)}.")


def nm_pattern(pattern: str) -> tuple[int, int] | None:
    """(n, m) of an "N:M" pattern (n of every m consecutive input weights pruned), None for "unstructured"."""
    if pattern == "unstructured":
        return None
    n, sep, m = pattern.partition(":")
    if not (sep and n.isdigit() and m.isdigit() and 0 < int(n) < int(m)):
        raise HeadwiseError(f"unknown sparsity pattern {pattern!r}; use unstructured or N:M with 0 < N < M, "
                            "e.g. 2:4.")
    return int(n), int(m)


def check_space(space: str) -> None:
    if space not in SPACES:
        raise HeadwiseError(f"unknown space {space!r}; use one of {', '.join(SPACES)}.")


@dataclass
class CalibConfig(Settings):
    """Calibration and evaluation text.

    Args:
        data: text source: wiki-en/fr/es (train split for calibration, test split for perplexity) or a UTF-8 file
            (its first part calibrates, the rest is scored; see `calibration.texts`).
        seq_len: tokens per window.
        windows: calibration windows: the pruner's statistics and the KL objective use the same tokens. The
            defaults (4 x 128 tokens) are `compress fit`'s: with 2 windows StratNet fitted those tokens and lost
            to uniform sparsity on held-out text at low sparsity (docs/unicuco.md).
        ppl_windows: test windows for perplexity.
        batch_size: windows per forward pass.
        method: unstructured pruner, "wanda" (input norms, no weight update) or "sparsegpt" (per-layer Hessians,
            OBS weight updates). It lives here because it decides which statistics calibration collects.
        rounding: how a block's ratio becomes a count of weights pruned per row: "nearest" (round; the searched
            ratios are continuous, so each is met within half a weight per row) or "floor" (`int()`, as
            locuslab/wanda, which prunes up to one weight per row less than asked; the `faithful` preset).
        inputs: where each block's statistics come from: "dense" (the dense model's inputs, collected once and
            reused by every strategy: UniCuCo's calibrate-once) or "sequential" (the outputs of the blocks already
            pruned to the strategy, as locuslab/wanda; a new pass over the calibration windows per strategy, about
            three forward passes; the `faithful` preset). The measured difference is in docs/parity.md.
        pattern: "unstructured" (any count per row) or "N:M", e.g. "2:4": in every group of M consecutive input
            weights of a row, the N lowest-scored are pruned (the reference's prune_n:prune_m, NVIDIA's 2:4
            sparse tensor cores). It fixes a pruned block's sparsity at N/M, so it is for uniform pruning
            (`compress prune`); `fit`, which searches per-block ratios, refuses it.
        sparsegpt_mask: how SparseGPT picks an unstructured mask at each block of 128 columns: "block"
            (locuslab/wanda's one threshold over the block of a linear, lib/sparsegpt.py:84-86, so rows differ) or
            "row" (each row's lowest-cost weights, every row exactly its count: headwise's choice until
            2026-12-05, which cost 11% held-out perplexity on SmolLM2 at 50%; docs/parity.md). Records written
            before the field existed read back with the default, as every new field, so that their commands
            still find their runs (tests/test_resume.py); a fit resumed then evaluates with the block mask.
    """

    data: str = "wiki-en"
    seq_len: int = 128
    windows: int = 4
    ppl_windows: int = 4
    batch_size: int = 2
    method: str = "wanda"
    rounding: str = "nearest"
    inputs: str = "dense"
    pattern: str = "unstructured"
    sparsegpt_mask: str = "block"

    PRESETS = {"faithful": {"rounding": "floor", "inputs": "sequential"}}

    def validate(self) -> None:
        check_method(self.method)
        if self.rounding not in ROUNDINGS:
            raise HeadwiseError(f"unknown rounding {self.rounding!r}; use one of {', '.join(ROUNDINGS)}.")
        if self.inputs not in INPUTS:
            raise HeadwiseError(f"unknown inputs {self.inputs!r}; use one of {', '.join(INPUTS)}.")
        nm_pattern(self.pattern)
        if self.sparsegpt_mask not in SPARSEGPT_MASKS:
            raise HeadwiseError(f"unknown SparseGPT mask {self.sparsegpt_mask!r}; use one of "
                                f"{', '.join(SPARSEGPT_MASKS)}.")
        if self.windows < 1 or self.ppl_windows < 1 or self.seq_len < 8:
            raise HeadwiseError("need at least one calibration and one perplexity window of at least 8 tokens.")
        if self.batch_size < 1:
            raise HeadwiseError(f"the batch size must be at least 1, got {self.batch_size}.")


@dataclass
class FitConfig(Settings):
    """The GP / StratNet loop (PSL-MOBO pattern).

    Args:
        space: "unstructured" (one sparsity ratio per decoder block, applied by `CalibConfig.method`) or "depth"
            (blocks removed).
        evals: budget of true evaluations (prune, forward, KL), the initial design included.
        initial: evaluations of the initial design; the rest come in rounds of `batch`.
        batch: new evaluations per round, chosen from StratNet's outputs.
        max_ratio: the largest per-block sparsity StratNet may output (unstructured).
        min_sparsity: the lowest mean sparsity the initial design spreads over.
        max_sparsity: the highest mean sparsity the initial design spreads over.
        steps: StratNet Adam steps per round.
        prefs_per_step: preferences sampled from Dirichlet(1, 1) per step.
        beta: lower-confidence-bound weight of the StratNets that propose new evaluations
            (mean - beta * std of the GP on log KL).
        serve_beta: the same weight for the final, served StratNet; negative = pessimistic, which keeps it
            where the GP has seen data.
        spread: StratNet's trust region (unstructured; 0 = unconstrained): offsets spread * tanh(.) minus their
            mean around the strategy's mean sparsity (see `stratnet.StratNet`).
        lr: StratNet learning rate.
        hidden: StratNet hidden width.
        gp_iters: most L-BFGS iterations of the GP's marginal-likelihood fit.
        kernel: the GP's kernel on a strategy's shape (its deviations from its mean), "matern" (Matern-5/2) or
            "rbf", both with one length-scale per block (ARD); see `gp.GPSurrogate`.
        seed: seeds the initial design, preference sampling and StratNet initialisation.
    """

    space: str = "unstructured"
    evals: int = 48
    initial: int = 16
    batch: int = 4
    max_ratio: float = 0.9
    min_sparsity: float = 0.1
    max_sparsity: float = 0.8
    steps: int = 400
    prefs_per_step: int = 16
    beta: float = 0.1
    serve_beta: float = -1.0
    spread: float = 0.05
    lr: float = 1e-3
    hidden: int = 256
    gp_iters: int = 200
    kernel: str = "matern"
    seed: int = 0

    def validate(self) -> None:
        check_space(self.space)
        if self.evals < 4 or not 2 <= self.initial <= self.evals or self.batch < 1:
            raise HeadwiseError("need evals >= 4, 2 <= initial <= evals and batch >= 1.")
        if not 0 < self.max_ratio <= 0.95 or not 0 <= self.min_sparsity < self.max_sparsity <= self.max_ratio:
            raise HeadwiseError("need 0 < max_ratio <= 0.95 and 0 <= min_sparsity < max_sparsity <= max_ratio.")
        if not 0 <= self.spread <= self.max_ratio:
            raise HeadwiseError(f"the spread must be in [0, max_ratio], got {self.spread}.")
        if self.kernel not in ("matern", "rbf"):
            raise HeadwiseError(f"unknown kernel {self.kernel!r}; use matern or rbf.")
