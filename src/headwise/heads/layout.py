"""Where the heads of a model live: the text decoder's layers, attention modules and out-projections."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from headwise.errors import HeadwiseError, UnsupportedModelError

# Text decoder families, keyed by the text config's model_type:
# (attribute of the decoder layer holding attention, attribute of attention holding the out-projection).
TEXT_FAMILIES: dict[str, tuple[str, str]] = {
    "llama": ("self_attn", "o_proj"),
    "mistral": ("self_attn", "o_proj"),
    "qwen2": ("self_attn", "o_proj"),
    "qwen3": ("self_attn", "o_proj"),
    "gemma": ("self_attn", "o_proj"),
    "gemma2": ("self_attn", "o_proj"),
    "gemma3_text": ("self_attn", "o_proj"),
    "phi": ("self_attn", "dense"),
    "phi3": ("self_attn", "o_proj"),
    "gpt2": ("attn", "c_proj"),
    "gpt_neox": ("attention", "dense"),
    "opt": ("self_attn", "out_proj"),
    "qwen2_vl_text": ("self_attn", "o_proj"),
    "qwen2_5_vl_text": ("self_attn", "o_proj"),
}
# Vision-language wrappers whose text decoder we reach through get_decoder(); the vision tower is never touched.
VLM_FAMILIES = ("llava", "llava_next", "instructblip", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm")
SUPPORTED = sorted({k.removesuffix("_text") for k in TEXT_FAMILIES} | set(VLM_FAMILIES))


class InvalidHeadsError(HeadwiseError, ValueError):
    """Layer or head indices, or factor shapes, that do not fit the model."""


@dataclass(frozen=True)
class HeadLayout:
    """The attention heads of a model's text decoder.

    `out_projs[l]` receives the concatenation of the heads' outputs of layer `l`; head `h` occupies
    input features `[h * head_dim, (h + 1) * head_dim)`. Query head `h` reads key/value head
    `h // (num_heads // num_kv_heads)`.
    """

    model_class: str
    family: str
    layers: tuple[nn.Module, ...]
    attentions: tuple[nn.Module, ...]
    out_projs: tuple[nn.Module, ...]
    num_heads: int
    num_kv_heads: int
    head_dim: int

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_layers, self.num_heads)

    def check_layer(self, layer: int) -> int:
        if not isinstance(layer, int) or not -self.num_layers <= layer < self.num_layers:
            raise InvalidHeadsError(
                f"layer {layer!r} is out of range: {self.model_class} has {self.num_layers} layers (0..{self.num_layers - 1})."
            )
        return layer % self.num_layers

    def check_head(self, head: int) -> int:
        if not isinstance(head, int) or not 0 <= head < self.num_heads:
            raise InvalidHeadsError(
                f"head {head!r} is out of range: {self.model_class} has {self.num_heads} heads per layer (0..{self.num_heads - 1})."
            )
        return head

    def out_weight(self, layer: int) -> torch.Tensor:
        """The out-projection weight as [out_features, num_heads * head_dim], whatever the module type."""
        proj = _base_layer(self.out_projs[self.check_layer(layer)])
        # GPT-2's Conv1D stores [in, out]; nn.Linear stores [out, in].
        return proj.weight.t() if type(proj).__name__ == "Conv1D" else proj.weight

    def to_dict(self) -> dict:
        return {
            "model_class": self.model_class,
            "family": self.family,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "attention_module": type(self.attentions[0]).__name__,
            "out_projection": type(_base_layer(self.out_projs[0])).__name__,
        }


def _base_layer(module: nn.Module) -> nn.Module:
    # PEFT wraps linears; hooks go on the wrapper, weights live on its base layer.
    return getattr(module, "base_layer", module)


def _unwrap(model: nn.Module) -> nn.Module:
    # PeftModel and DDP/FSDP wrappers expose the transformers model underneath.
    while not hasattr(model, "config") and hasattr(model, "module"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def _decoder_layers(decoder: nn.Module) -> nn.ModuleList:
    for name in ("layers", "h"):
        layers = getattr(decoder, name, None)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise UnsupportedModelError(f"could not find the decoder layers of {type(decoder).__name__}.")


def layout(model: nn.Module) -> HeadLayout:
    """Locate the attention heads of `model`'s text decoder.

    Raises:
        UnsupportedModelError: the model is not one of the supported families.
    """
    model = _unwrap(model)
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    text_config = config.get_text_config() if config is not None else None
    text_type = getattr(text_config, "model_type", None)
    top_ok = model_type in TEXT_FAMILIES or model_type in VLM_FAMILIES
    if not top_ok or text_type not in TEXT_FAMILIES:
        raise UnsupportedModelError(
            f"{type(model).__name__} (model_type {model_type!r}) is not supported by headwise; "
            f"supported families: {', '.join(SUPPORTED)}."
        )
    attn_name, proj_name = TEXT_FAMILIES[text_type]
    layers = tuple(_decoder_layers(model.get_decoder()))
    attentions = tuple(getattr(layer, attn_name) for layer in layers)
    out_projs = tuple(getattr(attn, proj_name) for attn in attentions)
    num_heads = text_config.num_attention_heads
    num_kv_heads = getattr(text_config, "num_key_value_heads", None) or num_heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // num_heads
    in_features = _base_layer(out_projs[0]).weight.shape[0 if proj_name == "c_proj" else 1]
    if in_features != num_heads * head_dim:
        raise UnsupportedModelError(
            f"{type(model).__name__}: out-projection takes {in_features} features, not heads x head_dim = "
            f"{num_heads} x {head_dim}; headwise cannot split it into heads."
        )
    return HeadLayout(type(model).__name__, text_type.removesuffix("_text"), layers, attentions, out_projs,
                      num_heads, num_kv_heads, head_dim)
