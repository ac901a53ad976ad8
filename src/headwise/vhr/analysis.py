"""T-VHD along a caption: how much each generated token relied on the image (Eq. 5).

Both streams are teacher-forced with the caption's tokens in one left-padded batch: row 0 is the
image prompt, row 1 the image-free prompt, each followed by the caption. The head outputs at the
positions that predict each caption token are compared, so the image-free stream sees exactly the
history the image stream produced. Nothing is reinforced.
"""

from __future__ import annotations

import torch

from headwise.errors import HeadwiseError
from headwise.heads import layout, out_proj_pre_hooks, split_heads
from headwise.vhr.heads import divergence, token_score
from headwise.vhr.inputs import encode, to_device


def _append(batch: dict, ids: torch.Tensor) -> dict:
    """Append the same token ids to every row; per-token side inputs get zeros (text tokens)."""
    length = batch["input_ids"].shape[1]
    out = dict(batch)
    rows = batch["input_ids"].shape[0]
    tail = ids.to(batch["input_ids"].device).expand(rows, -1)
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == (rows, length):
            fill = tail if key == "input_ids" else torch.ones_like(tail) if key == "attention_mask" else torch.zeros_like(tail)
            out[key] = torch.cat([value, fill.to(value.dtype)], dim=1)
    return out


@torch.no_grad()
def token_vhd(model, processor, image, prompt: str, caption_ids: torch.Tensor, k: int = 8) -> dict:
    """T-VHD for every token of a generated caption.

    Args:
        caption_ids: the generated token ids, [tokens] or [1, tokens] (no prompt).
        k: heads per layer summed into T-VHD (the paper does not state k; 8 follows GLIMPSE).

    Returns:
        {"tokens": [str], "t_vhd": [float per token], "vhd": tensor [tokens, layers, heads]}.
    """
    if k < 1:
        raise HeadwiseError(f"k must be at least 1, got {k}.")
    caption_ids = caption_ids.reshape(1, -1)
    count = caption_ids.shape[1]
    if count == 0:
        raise HeadwiseError("the caption has no tokens to analyse.")
    lay = layout(model)
    batch = _append(to_device(encode(model, processor, [image], [prompt], text_only=True), model), caption_ids)
    vhd = torch.zeros(count, *lay.shape)

    def make(layer: int):
        def hook(module, args):
            # Positions -count-1 .. -2 predict caption tokens 0 .. count-1.
            heads = split_heads(args[0][:, -count - 1:-1], lay.num_heads)
            vhd[:, layer] = divergence(heads[0], heads[1]).cpu()
        return hook

    with out_proj_pre_hooks(lay, {layer: make(layer) for layer in range(lay.num_layers)}):
        model(**batch, use_cache=False)
    tok = getattr(processor, "tokenizer", processor)
    return {"tokens": tok.convert_ids_to_tokens(caption_ids[0].tolist()), "t_vhd": token_score(vhd, k).tolist(),
            "vhd": vhd}
