"""VHR (He et al., ACL 2025): vision-aware head divergence and head reinforcement, with baselines.

`generate(model, processor, images, prompts, method)` runs any registered decoding method
(`headwise.vhr.methods.METHODS`) on the same inputs; `method` is a name (its default settings) or
a method's config, e.g. `VHRConfig(alpha=3)`. Extra forward passes per method (n samples, T new tokens):

| method | prefill | per new token |
|---|---|---|
| greedy | 1 | 1 |
| vhr | 1 lockstep (image + image-free rows, one batch), whose cache generate() continues; 2 where it cannot (see vhr.core) | 1, plus a scale per reinforced layer |
| vcd | 2 (image + noised image, one batch) | 2 (one batch) |
| pai | 1 + 1 image-free (one batch) | 2 (one batch); boosted layers run eager attention |
"""

from __future__ import annotations

from headwise.config import Settings
from headwise.errors import HeadwiseError
from headwise.vhr.analysis import token_vhd
from headwise.vhr.config import (HEAD_CHOICES, POSITIONS, DecodeConfig, GreedyConfig, PAIConfig, VCDConfig, VHRConfig,
                                 check_choice)
from headwise.vhr.core import Generation, head_divergence, lockstep
from headwise.vhr.heads import default_layers, select_heads, token_score
from headwise.vhr.methods import METHODS, check_generate_kwargs, check_method, method_of


def generate(model, processor, images, prompts, method: str | Settings = "vhr", *, seed: int = 0,
             **generate_kwargs) -> Generation:
    """Describe `images` (one prompt each) with a decoding method.

    Args:
        method: a registered method's name (greedy, vhr, vcd, pai), which runs with its default settings, or
            a method's config (VHRConfig, VCDConfig, PAIConfig, GreedyConfig) with the settings to use.
        seed: of the method's random draws (VHR's random and complement heads, VCD/PAI sampling).
        generate_kwargs: `model.generate`'s own (max_new_tokens defaults to 64, greedy by default).

    Returns:
        Generation with `texts` and, for VHR, `heads` [n, layers, heads] (bool) and `vhd`.
    """
    if isinstance(method, Settings):
        config, name = method, method_of(method)
    else:
        name = check_method(method)
        config = METHODS[name].config()
    check_generate_kwargs(generate_kwargs)
    if isinstance(prompts, str):
        prompts = [prompts] * len(images)
    if len(prompts) != len(images):
        raise HeadwiseError(f"{len(images)} images but {len(prompts)} prompts; give one prompt per image.")
    return METHODS[name].generate(model, processor, list(images), list(prompts), config, seed, **generate_kwargs)


__all__ = ["HEAD_CHOICES", "METHODS", "POSITIONS", "DecodeConfig", "Generation", "GreedyConfig", "PAIConfig",
           "VCDConfig", "VHRConfig", "check_choice", "default_layers", "generate", "head_divergence", "lockstep",
           "select_heads", "token_score", "token_vhd"]
