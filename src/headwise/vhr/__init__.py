"""VHR (He et al., ACL 2025): vision-aware head divergence and head reinforcement, with baselines.

`generate(model, processor, images, prompts, method=...)` runs any registered decoding method on
the same inputs. Extra forward passes per method (n samples, T new tokens):

| method | prefill | per new token |
|---|---|---|
| greedy | 1 | 1 |
| vhr | 1 lockstep (image + image-free rows, one batch), whose cache generate() continues; 2 where it cannot (see vhr.core) | 1, plus a scale per reinforced layer |
| vcd | 2 (image + noised image, one batch) | 2 (one batch) |
| pai | 1 + 1 image-free (one batch) | 2 (one batch); boosted layers run eager attention |
"""

from __future__ import annotations

from headwise.errors import HeadwiseError
from headwise.vhr.analysis import token_vhd
from headwise.vhr.baselines import generate_pai, generate_vcd
from headwise.vhr.core import (HEAD_CHOICES, POSITIONS, Generation, check_choice, generate_greedy, generate_vhr,
                               head_divergence, lockstep)
from headwise.vhr.heads import default_layers, select_heads, token_score

METHODS = {"greedy": generate_greedy, "vhr": generate_vhr, "vcd": generate_vcd, "pai": generate_pai}


def generate(model, processor, images, prompts, method: str = "vhr", alpha: float = 2.0, layers=None,
             heads: str = "vhd", positions: str = "all", **generate_kwargs) -> Generation:
    """Describe `images` (one prompt each) with a decoding method.

    Args:
        method: greedy, vhr, vcd or pai.
        alpha: VHR's scale for the chosen heads (ignored by the other methods).
        layers: VHR's reinforced layers (default: 1 plus the last 14/32 of the depth).
        heads: VHR's heads: vhd (the paper's choice), random (as many per layer and sample, drawn with
            generate_kwargs' seed, default 0) or complement (as many, drawn from those VHD left out).
        positions: where VHR scales: all (the paper) or generated (only positions that predict output tokens).
        generate_kwargs: passed to `model.generate` (max_new_tokens defaults to 64, greedy by default),
            plus method options: outlier_rule, reinforce_text (vhr); cd_alpha, cd_beta, noise_step (vcd);
            pai_alpha, pai_gamma, pai_layers (pai); seed for the sampling of vcd/pai.

    Returns:
        Generation with `texts` and, for VHR, `heads` [n, layers, heads] (bool) and `vhd`.
    """
    if method not in METHODS:
        raise HeadwiseError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if isinstance(prompts, str):
        prompts = [prompts] * len(images)
    if len(prompts) != len(images):
        raise HeadwiseError(f"{len(images)} images but {len(prompts)} prompts; give one prompt per image.")
    check_choice(heads, HEAD_CHOICES, "heads")
    check_choice(positions, POSITIONS, "positions")
    if method == "vhr":
        generate_kwargs |= {"alpha": alpha, "layers": layers, "heads": heads, "positions": positions}
    return METHODS[method](model, processor, list(images), list(prompts), **generate_kwargs)


__all__ = ["HEAD_CHOICES", "METHODS", "POSITIONS", "Generation", "default_layers", "generate", "head_divergence", "lockstep", "select_heads",
           "token_score", "token_vhd"]
