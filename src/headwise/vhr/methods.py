"""The decoding methods, by name: one registration line each (config class, generate function), as PEFT
registers its tuners. `headwise.vhr.generate`, the CLI's `--method`, the testbed table and the harness
plug-ins all read this table, so a method registered here is reachable from all of them.

A generate function is `fn(model, processor, images, prompts, config, seed, **generate_kwargs) -> Generation`,
where `generate_kwargs` are `model.generate`'s own and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from headwise.config import Settings
from headwise.errors import HeadwiseError
from headwise.vhr.baselines import generate_pai, generate_vcd
from headwise.vhr.config import GreedyConfig, PAIConfig, VCDConfig, VHRConfig
from headwise.vhr.core import generate_greedy, generate_vhr


@dataclass(frozen=True)
class DecodingMethod:
    name: str
    config: type[Settings]
    generate: Callable
    summary: str


METHODS: dict[str, DecodingMethod] = {}


def register(name: str, config: type[Settings], generate: Callable, summary: str) -> None:
    METHODS[name] = DecodingMethod(name, config, generate, summary)


register("greedy", GreedyConfig, generate_greedy, "the base decoder, nothing changed")
register("vhr", VHRConfig, generate_vhr, "vision-aware head reinforcement (He et al., ACL 2025)")
register("vcd", VCDConfig, generate_vcd, "visual contrastive decoding (Leng et al., CVPR 2024)")
register("pai", PAIConfig, generate_pai, "paying more attention to image (Liu et al., ECCV 2024)")


def check_method(name: str) -> str:
    if name not in METHODS:
        raise HeadwiseError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}.")
    return name


def method_of(config: Settings) -> str:
    """The registered name of a method config's class."""
    for name, method in METHODS.items():
        if type(config) is method.config:
            return name
    raise HeadwiseError(f"{type(config).__name__} is not the config of a registered decoding method.")


def check_generate_kwargs(generate_kwargs: dict) -> None:
    """Refuse a method option given as a generate() keyword argument, saying where it belongs."""
    for name, method in METHODS.items():
        misplaced = sorted(set(generate_kwargs) & set(method.config.field_names()))
        if misplaced:
            raise HeadwiseError(f"{', '.join(misplaced)} {'is' if len(misplaced) == 1 else 'are'} {name}'s "
                                f"option{'s' * (len(misplaced) > 1)}: pass {method.config.__name__}"
                                f"({misplaced[0]}=...) as the method.")
