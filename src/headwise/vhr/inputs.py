"""Paired model inputs: the image prompt and the same chat template with the image part removed."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from PIL import Image

from headwise.errors import HeadwiseError


def image_token_id(model) -> int:
    config = model.config
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise HeadwiseError(f"{type(model).__name__} has no image token (config.image_token_id); it is not a vision-language model.")


def render(processor, prompt: str, with_image: bool) -> str:
    """The chat-template prompt, with or without the image entry, ending where the answer starts."""
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": prompt}]
    if getattr(processor, "chat_template", None):
        return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                             tokenize=False)
    # No template (e.g. InstructBLIP): the processor adds the image tokens itself; the text is the instruction.
    return prompt


def load_image(path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise HeadwiseError(f"image {path} does not exist.") from None
    except (OSError, ValueError) as err:
        raise HeadwiseError(f"image {path} could not be read ({err}).") from None


@contextmanager
def left_padding(processor):
    """Pad on the left so every row's last real token sits at index -1 (the position VHD reads)."""
    tok = getattr(processor, "tokenizer", processor)
    side = tok.padding_side
    tok.padding_side = "left"
    try:
        yield
    finally:
        tok.padding_side = side


def _images_arg(processor, images: list, text_rows: int):
    # Idefics3 and SmolVLM take one list of images per row; the others a flat list for the rows that have them.
    if any(c.__name__.startswith(("Idefics3", "SmolVLM")) for c in type(processor).__mro__):
        return [[img] for img in images] + [[] for _ in range(text_rows)]
    return images


def encode(model, processor, images: list, prompts: list[str], text_only: bool = False) -> dict:
    """Inputs for `len(images)` image rows followed, with text_only=True, by their image-free twins.

    Row i (image) pairs with row n + i (no image); padding is on the left.
    """
    token = image_token_id(model)
    texts = [render(processor, p, True) for p in prompts]
    bare = [render(processor, p, False) for p in prompts] if text_only else []
    with left_padding(processor):
        batch = processor(text=texts + bare, images=_images_arg(processor, images, len(bare)), padding=True,
                          return_tensors="pt")
    ids = batch["input_ids"]
    n = len(images)
    if not bool((ids[:n] == token).any(-1).all()):
        raise HeadwiseError("the processor put no image token into the prompt; check its chat template.")
    if bare and bool((ids[n:] == token).any()):
        raise HeadwiseError("the prompt template cannot be stripped of its image: the image-free prompt still "
                            "holds image tokens.")
    return dict(batch)


def to_device(batch: dict, model) -> dict:
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device)
            if value.is_floating_point():
                value = value.to(dtype)
        out[key] = value
    return out
