"""UniCuCo (Ye and Tang, Findings of ACL 2025): one StratNet, trained through a GP surrogate, that maps any
compression request (a size/quality preference or a target sparsity) to a per-block pruning strategy.

Modules: `calibration` (cached statistics), `wanda`, `sparsegpt` (both on `unstructured`) and `depth`
(apply/restore strategies), `sequential` (statistics on the pruned blocks' outputs, locuslab/wanda's order), `objectives` (size, KL, Tchebycheff, Evaluator, the pruner factory), `gp`,
`stratnet`, `fit` (the training loop), `strategy` (requests, bisection, projection), `serve`, `baselines`
(uniform, OWL, per-request evolutionary search), `plots`.
"""

from headwise.compress.config import CalibConfig, FitConfig

__all__ = ["CalibConfig", "FitConfig"]
