"""Vision-aware head divergence (VHD) and the VHR head choice (He et al., ACL 2025, Eqs. 4-7).

VHD of head (l, i) is the L2 distance between its output at the last position with and without
the image. VHR zeroes "negative-sensitivity" outliers (Eq. 6: VHD and the squared text-only norm
both above mean + std of the layer) and reinforces the heads strictly above the layer's median VHD.
"""

from __future__ import annotations

import torch


def default_layers(num_layers: int) -> list[int]:
    """Layer index 1 plus the last 14/32 of the depth: the paper's LLaVA setting, scaled to any depth."""
    last = max(1, round(num_layers * 14 / 32))
    return sorted({min(1, num_layers - 1), *range(num_layers - last, num_layers)})


NOISE_EPS = 4  # see divergence()


def divergence(with_image: torch.Tensor, without_image: torch.Tensor) -> torch.Tensor:
    """VHD per head: [..., heads, head_dim] x 2 -> [..., heads], in float32.

    A difference of at most 4 eps of the inputs' dtype, relative to the larger norm, counts as 0:
    it is rounding noise and must not decide which heads are reinforced. Two roundings of one vector
    differ by at most 1 eps; the same input in two rows of one float32 batch came out up to 1.7 eps
    apart on the tiny test models (the vision tower batches differently), so 4 eps leaves a margin.
    It stays a few ulps on purpose: in bfloat16 eps is 1/128, and the former floor of 16 eps (12.5% of
    the norm) zeroed a third of emoji-llava's heads, many with real divergences; 4 eps is 3.1%.
    """
    a, b = with_image.float(), without_image.float()
    vhd = (a - b).norm(dim=-1)
    noise = NOISE_EPS * torch.finfo(with_image.dtype).eps * torch.maximum(a.norm(dim=-1), b.norm(dim=-1))
    return vhd.masked_fill(vhd <= noise, 0.0)


def select_heads(vhd: torch.Tensor, text_only: torch.Tensor, outlier_rule: bool = True) -> torch.Tensor:
    """Heads to reinforce in one layer, per sample.

    Args:
        vhd: [batch, heads] divergences.
        text_only: [batch, heads, head_dim] head outputs of the image-free input (for Eq. 6).
        outlier_rule: apply Eq. 6 (zero heads whose VHD and text-only norm are both outliers).

    Returns:
        bool [batch, heads]: VHD strictly above the layer's (lower) median, after the outlier rule.
        Identical inputs (all VHD 0) choose no head.
    """
    vhd = vhd.float()
    if outlier_rule:
        ta = text_only.float().pow(2).sum(-1)
        high_vhd = vhd > vhd.mean(-1, keepdim=True) + vhd.std(-1, unbiased=False, keepdim=True)
        high_ta = ta > ta.mean(-1, keepdim=True) + ta.std(-1, unbiased=False, keepdim=True)
        vhd = vhd.masked_fill(high_vhd & high_ta, 0.0)
    return vhd > vhd.median(-1, keepdim=True).values


def token_score(vhd: torch.Tensor, k: int = 8) -> torch.Tensor:
    """T-VHD (Eq. 5): the sum over layers of the k largest VHD values of each layer. vhd: [..., layers, heads]."""
    k = min(k, vhd.shape[-1])
    return vhd.topk(k, dim=-1).values.sum(dim=(-1, -2))
