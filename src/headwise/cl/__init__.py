"""Continual fine-tuning of language models: SeqFT, Replay, DER++ and SEEKR (He et al., EMNLP 2024).

SEEKR replays a small buffer of each finished task and distils, besides the logits, the attention
maps of the heads that were both most changed by learning a task (forgettability) and most
important to its loss (task sensitivity), chosen hierarchically under layer and head budgets.
"""

from headwise.cl.config import BenchmarkConfig, CLConfig
from headwise.cl.metrics import backward_transfer, forward_transfer, overall_performance, summarize


def __getattr__(name):
    # The method table imports torch; `import headwise.cl` (and the CLI's --help) stays light without it.
    if name == "METHODS":
        from headwise.cl.methods import METHODS
        return METHODS
    raise AttributeError(f"module 'headwise.cl' has no attribute {name!r}")


__all__ = ["METHODS", "BenchmarkConfig", "CLConfig", "backward_transfer", "forward_transfer", "overall_performance", "summarize"]
