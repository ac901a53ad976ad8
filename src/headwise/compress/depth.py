"""Depth pruning: remove whole decoder blocks, in place and reversibly, keeping the KV cache consistent.

Each kept block's attention learns its new position (`layer_idx`), and the config's layer count and per-layer
attention types are cut to match, so generation with a cache and `save_pretrained` -> `from_pretrained` work.
"""

from __future__ import annotations

import torch
from torch import nn

from headwise.errors import HeadwiseError


def _layers_attr(decoder) -> str:
    for name in ("layers", "h"):
        if isinstance(getattr(decoder, name, None), nn.ModuleList):
            return name
    raise HeadwiseError(f"could not find the decoder blocks of {type(decoder).__name__}.")


class DepthPruner:
    """Drop decoder blocks of `model` (a 0/1 vector, 1 = removed); `restore` puts them all back."""

    def __init__(self, model):
        self.model = model
        self.decoder = model.get_decoder()
        self.attr = _layers_attr(self.decoder)
        self.layers = list(getattr(self.decoder, self.attr))
        self.config = model.config.get_text_config()
        self.layer_types = list(getattr(self.config, "layer_types", None) or []) or None
        self.current = [0] * len(self.layers)

    @property
    def num_blocks(self) -> int:
        return len(self.layers)

    def apply(self, drop) -> float:
        """Remove the blocks where drop[i] is 1; returns the fraction of blocks removed."""
        drop = [int(round(float(v))) for v in drop]
        if len(drop) != self.num_blocks:
            raise HeadwiseError(f"a depth strategy needs {self.num_blocks} entries, got {len(drop)}.")
        if any(v not in (0, 1) for v in drop):
            raise HeadwiseError("a depth strategy must hold only 0 (keep) and 1 (remove).")
        keep = [i for i, v in enumerate(drop) if not v]
        if not keep:
            raise HeadwiseError("a depth strategy cannot remove every block.")
        self._set(keep)
        self.current = drop
        return sum(drop) / len(drop)

    def _set(self, keep: list[int]) -> None:
        setattr(self.decoder, self.attr, nn.ModuleList([self.layers[i] for i in keep]))
        for new_idx, i in enumerate(keep):
            for mod in self.layers[i].modules():
                if hasattr(mod, "layer_idx"):
                    mod.layer_idx = new_idx
        self.config.num_hidden_layers = len(keep)
        if self.layer_types is not None:
            self.config.layer_types = [self.layer_types[i] for i in keep]

    def restore(self) -> None:
        self._set(list(range(self.num_blocks)))
        self.current = [0] * self.num_blocks


def drop_top(x: torch.Tensor | list[float], k: int) -> list[int]:
    """Project a relaxed strategy to a depth strategy: remove the k blocks with the largest x_i."""
    x = torch.as_tensor(x, dtype=torch.float64)
    drop = [0] * len(x)
    for i in torch.argsort(x, descending=True, stable=True)[:k].tolist():
        drop[i] = 1
    return drop
