"""Paired model inputs: the image prompt and the same chat template with the image part removed."""

from __future__ import annotations

import re
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


def _image_text(processor) -> str | None:
    """The processor's image placeholder as written in prompts (e.g. "<image>"), if it has one."""
    value = getattr(processor, "image_token", None)
    return getattr(value, "content", value) or None  # InstructBLIP keeps an AddedToken


def render(processor, prompt: str, with_image: bool) -> str:
    """The chat-template prompt, with or without the image entry, ending where the answer starts.

    Without a chat template the prompt is used as written. If it holds the processor's image token
    (LLaVA-1.5 style, "USER: <image>\nDescribe this image. ASSISTANT:"), the image-free twin drops
    that token and the newline after it; otherwise (InstructBLIP) the processor adds the image itself.
    """
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": prompt}]
    if getattr(processor, "chat_template", None):
        return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                             tokenize=False)
    image_text = _image_text(processor)
    if with_image or not image_text:
        return prompt
    return re.sub(re.escape(image_text) + r"\n?", "", prompt)


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


# Keys that hold one entry per token; everything else (pixels, grids, Q-Former text) belongs to the images.
TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")


def _processes_rows_apart(processor) -> bool:
    # InstructBLIP's processor prepends the query tokens to every row whenever images are given,
    # so its image-free rows must be encoded without images and merged afterwards.
    return any(c.__name__.startswith("InstructBlip") for c in type(processor).__mro__)


def _merge_left_padded(first: dict, second: dict, pad_id: int) -> dict:
    """Stack two encodings row-wise, left-padding their token keys to a common length; image keys from `first`."""
    length = max(first["input_ids"].shape[1], second["input_ids"].shape[1])
    merged = {k: v for k, v in first.items() if k not in TOKEN_KEYS}
    for key in TOKEN_KEYS:
        if key not in first:
            continue
        parts = []
        for enc in (first, second):
            value = enc.get(key, torch.zeros_like(enc["input_ids"]))
            fill = pad_id if key == "input_ids" else 0
            parts.append(torch.nn.functional.pad(value, (length - value.shape[1], 0), value=fill))
        merged[key] = torch.cat(parts)
    return merged


def _repack(batch: dict, keys: tuple[str, ...], mask_key: str, pad_id: int, left: bool) -> dict:
    """Move every row's real tokens to one end, keeping their order; a no-op for rows already packed."""
    if mask_key not in batch:
        return batch
    mask = batch[mask_key].long()
    packed = (mask.diff(dim=-1) >= 0) if left else (mask.diff(dim=-1) <= 0)
    if bool(packed.all()):
        return batch
    order = torch.sort(mask if left else -mask, dim=-1, stable=True).indices
    out = dict(batch)
    for key in keys:
        if key in batch:
            out[key] = batch[key].gather(-1, order)
    id_key = keys[0]
    out[id_key] = out[id_key].masked_fill(~out[mask_key].bool(), pad_id)
    return out


def _pad_id(tokenizer) -> int:
    return getattr(tokenizer, "pad_token_id", None) or 0


def _text_pad_id(processor) -> int:
    return _pad_id(getattr(processor, "tokenizer", processor))


def _normalise_padding(batch: dict, processor) -> dict:
    # The language model's rows are left-padded (real tokens at the right end), whatever the processor
    # did: InstructBLIP's puts its query tokens before the padding. Its Q-Former text is BERT-style
    # (absolute positions) and must stay right-padded, but its processor pads it like the main text.
    batch = _repack(batch, TOKEN_KEYS, "attention_mask", _text_pad_id(processor), left=True)
    return _repack(batch, ("qformer_input_ids", "qformer_attention_mask"), "qformer_attention_mask",
                   _pad_id(getattr(processor, "qformer_tokenizer", None)), left=False)


def encode(model, processor, images: list, prompts: list[str], text_only: bool = False) -> dict:
    """Inputs for `len(images)` image rows followed, with text_only=True, by their image-free twins.

    Row i (image) pairs with row n + i (no image); padding is on the left.
    """
    token = image_token_id(model)
    texts = [render(processor, p, True) for p in prompts]
    bare = [render(processor, p, False) for p in prompts] if text_only else []
    image_text = _image_text(processor)
    if image_text and any(image_text in text for text in bare):
        raise HeadwiseError("the prompt template cannot be stripped of its image: without the image entry it "
                            f"still writes {image_text}; give the processor a chat template with an image entry.")
    try:
        with left_padding(processor):
            if bare and _processes_rows_apart(processor):
                with_images = dict(processor(text=texts, images=images, padding=True, return_tensors="pt"))
                without = dict(processor(text=bare, padding=True, return_tensors="pt"))
                batch = _merge_left_padded(with_images, without, _text_pad_id(processor))
            else:
                batch = dict(processor(text=texts + bare, images=_images_arg(processor, images, len(bare)),
                                       padding=True, return_tensors="pt"))
    except (ValueError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise HeadwiseError(f"the processor could not encode the prompt with its image: {first}") from err
    batch = _normalise_padding(batch, processor)
    ids = batch["input_ids"]
    n = len(images)
    if not bool((ids[:n] == token).any(-1).all()):
        raise HeadwiseError("the processor put no image token into the prompt; check its chat template.")
    if bare and bool((ids[n:] == token).any()):
        raise HeadwiseError("the prompt template cannot be stripped of its image: the image-free prompt still "
                            "holds image tokens.")
    return batch


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
