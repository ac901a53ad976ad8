"""Decoding settings for model-in-the-loop runs, and the decoder that eval's CHAIR and POPE runners call.

eval scores and knows no method; the commands build a `Decoder` here and hand it over.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from headwise.errors import HeadwiseError
from headwise.eval.vlm import Decoder
from headwise.vhr.core import HEAD_CHOICES, POSITIONS, check_alpha, check_choice
from headwise.vhr.inputs import load_image


@dataclass
class DecodeConfig:
    """How captions or answers are decoded (the same for every image of a run)."""

    method: str = "vhr"
    alpha: float = 2.0
    layers: list[int] | None = None
    prompt: str = "Please describe this image in detail."
    max_new_tokens: int = 64
    batch_size: int = 1
    seed: int = 0
    extra: dict = field(default_factory=dict)  # method options, e.g. cd_alpha, pai_gamma, heads, positions


def decode_config(method: str = "vhr", alpha: float = 2.0, layers: list[int] | None = None,
                  heads: str = "vhd", positions: str = "all", **fields) -> DecodeConfig:
    """A checked DecodeConfig. VHR's ablations go into `extra` only when they are not the default, so runs
    recorded before they existed resume under the same settings."""
    from headwise.vhr import METHODS

    if method not in METHODS:
        raise HeadwiseError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    check_alpha(alpha)
    check_choice(heads, HEAD_CHOICES, "heads")
    check_choice(positions, POSITIONS, "positions")
    defaults = {"heads": "vhd", "positions": "all"}
    extra = {k: v for k, v in {"heads": heads, "positions": positions}.items() if v != defaults[k]}
    return DecodeConfig(method=method, alpha=alpha, layers=layers, extra=extra, **fields)


def decoder(model, processor, cfg: DecodeConfig) -> Decoder:
    """A Decoder for eval's runners: loads each image and decodes with `headwise.vhr.generate`."""
    from headwise.vhr import generate

    options = dict(cfg.extra)
    if cfg.method == "vhr":
        options.setdefault("seed", cfg.seed)  # random and complement heads are drawn with the run's seed

    def describe(files, prompts):
        images = [load_image(f) for f in files]
        return generate(model, processor, images, prompts, method=cfg.method, alpha=cfg.alpha, layers=cfg.layers,
                        max_new_tokens=cfg.max_new_tokens, **options).texts

    return Decoder(describe, asdict(cfg), prompt=cfg.prompt, seed=cfg.seed, batch_size=cfg.batch_size,
                   label=cfg.method)
