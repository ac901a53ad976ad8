"""Continual fine-tuning of language models: SeqFT, Replay, DER++ and SEEKR (He et al., EMNLP 2024).

SEEKR replays a small buffer of each finished task and distils, besides the logits, the attention
maps of the heads that were both most changed by learning a task (forgettability) and most
important to its loss (task sensitivity), chosen hierarchically under layer and head budgets.
"""

from headwise.cl.config import METHODS, CLConfig
from headwise.cl.metrics import backward_transfer, forward_transfer, overall_performance, summarize

__all__ = ["METHODS", "CLConfig", "backward_transfer", "forward_transfer", "overall_performance", "summarize"]
