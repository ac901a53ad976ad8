"""emoji-llava: a LlavaForConditionalGeneration whose language model is the real SmolLM2-135M-Instruct.

The vision tower (a 4-layer CLIP ViT on 96 px images, 16 px patches: 36 image tokens), the projector
and a LoRA adapter on SmolLM2's q/v projections are trained by `headwise testbed train`; those
weights ship in the repo (`shipped/emoji_llava.safetensors`). `--full-ft` trains every SmolLM2
weight instead of the adapter, as LLaVA-1.5 does; its weights load the same way. `build()` adds SmolLM2 from the asset
cache and merges the adapter, and the result is saved once into the cache as an ordinary
transformers folder, which `load_model("emoji-llava")` loads like any other model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import torch
import transformers as tf

from headwise.assets.registry import cache_dir, require, sha256
from headwise.errors import AssetMissingError, HeadwiseError
from headwise.runs import check_out, save_pretrained

IMAGE_SIZE, PATCH = 96, 16
# A reserved SmolLM2 token that never occurs in text stands in for image positions: no new embeddings.
IMAGE_TOKEN = "<empty_output>"
LORA_TARGETS = ("q_proj", "v_proj")
LORA_RANK, LORA_ALPHA = 8, 16
LM_PREFIX = "model.language_model."
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<empty_output>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
VISION = dict(hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=3,
              image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=192)
CLIP_MEAN_STD = dict(image_mean=[0.4815, 0.4578, 0.4082], image_std=[0.2686, 0.2613, 0.2758])


def shipped_weights() -> Path:
    return Path(str(resources.files("headwise.testbed").joinpath("shipped/emoji_llava.safetensors")))


def _existing(weights: Path | None) -> Path:
    """`weights` (default: the shipped file), which must exist."""
    weights = Path(weights) if weights else shipped_weights()
    if not weights.is_file():
        raise AssetMissingError(f"{weights} is missing; train it with `headwise testbed train` or reinstall headwise.")
    return weights


def read_weights(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """emoji-llava weights from a file, checked before anything is loaded or written; `what` names it in errors.

    Two layouts: a LoRA adapter (lora_A/lora_B factors, the default model) or a full fine-tune (every
    language-model weight, `testbed train --full-ft`); both hold the vision tower and the projector.
    """
    from safetensors.torch import load_file

    hint = "give an emoji_llava.safetensors from `headwise testbed train`."
    if not Path(path).is_file():
        raise HeadwiseError(f"{what} {path} is not a file; {hint}")
    try:
        state = load_file(path)
    except Exception as err:  # safetensors raises its own error types for foreign or damaged files
        raise HeadwiseError(f"{what} {path} is not a readable safetensors file ({err}); {hint}") from None
    parts = ("model.vision_tower.", "model.multi_modal_projector.")
    parts += (LM_PREFIX,) if is_full(state) else ("lora_A", "lora_B")
    missing = [p for p in parts if not any(p in k for k in state)]
    if missing:
        raise HeadwiseError(f"{what} {path} holds no {missing[0].rstrip('.')} weights; {hint}")
    return state


def is_full(state: dict[str, torch.Tensor]) -> bool:
    """Whether `state` is a full fine-tune (language-model weights of its own) rather than a LoRA adapter."""
    # an adapter's factors also sit under the language model's prefix
    return not any("lora_" in k for k in state) and any(k.startswith(LM_PREFIX) for k in state)


def processor(tokenizer) -> tf.LlavaProcessor:
    image_processor = tf.CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                               crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, **CLIP_MEAN_STD)
    return tf.LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                             vision_feature_select_strategy="default", num_additional_image_tokens=1,
                             image_token=IMAGE_TOKEN, chat_template=CHAT_TEMPLATE)


def fresh(smollm2_dir: Path | None = None, seed: int = 0):
    """SmolLM2 inside a LLaVA with a randomly initialised vision tower and projector, and its processor."""
    smollm2_dir = smollm2_dir or require("smollm2") / "hf"
    tokenizer = tf.AutoTokenizer.from_pretrained(smollm2_dir)
    lm = tf.AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    torch.manual_seed(seed)
    config = tf.LlavaConfig(vision_config=tf.CLIPVisionConfig(**VISION), text_config=lm.config,
                            image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), vision_feature_layer=-1,
                            vision_feature_select_strategy="default", projector_hidden_act="gelu",
                            tie_word_embeddings=lm.config.tie_word_embeddings)
    model = tf.LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.load_state_dict(lm.lm_head.state_dict())
    model.tie_weights()
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), processor(tokenizer)


def trainable_state(model, full: bool = False) -> dict[str, torch.Tensor]:
    """The weights that are not SmolLM2's: vision tower, projector and LoRA factors; with `full`, every
    language-model weight instead of the factors (the tied output embedding once, as its input twin)."""
    mine = ("model.vision_tower.", "model.multi_modal_projector.") + ((LM_PREFIX,) if full else ())
    tied = model.config.tie_word_embeddings
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()
            if k.startswith(mine) or (not full and "lora_" in k) or (full and k == "lm_head.weight" and not tied)}


def with_adapter(model):
    """`model` wrapped in a fresh LoRA adapter on SmolLM2's q/v projections (peft), the weights that train."""
    from peft import LoraConfig

    from headwise.models import get_peft_model

    return get_peft_model(model, LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, lora_dropout=0.0,
                                            target_modules=r".*language_model.*\.(q_proj|v_proj)"))


def load_trained(peft_model, state: dict[str, torch.Tensor]) -> None:
    """Load weights in the shipped layout (vision tower, projector, LoRA factors) into a `with_adapter` model."""
    prefixed = {"base_model.model." + k: v.float() for k, v in state.items()}
    unexpected = peft_model.load_state_dict(prefixed, strict=False).unexpected_keys
    if unexpected:
        raise AssetMissingError(f"weights do not match emoji-llava (e.g. {unexpected[0]}); rebuild them with "
                                "`headwise testbed train`.")


def merge_lora(model, state: dict[str, torch.Tensor]) -> None:
    """Add scale * B @ A of each LoRA pair in `state` into the matching linear weight of `model`."""
    scale = LORA_ALPHA / LORA_RANK
    for key, a in state.items():
        if ".lora_A." not in key:
            continue
        b = state[key.replace(".lora_A.", ".lora_B.")]
        # peft names: ...self_attn.q_proj.lora_A.default.weight -> ...self_attn.q_proj.weight
        target = key.split(".lora_A.")[0].replace("base_model.model.", "") + ".weight"
        target = target.replace("model.model.language_model", "model.language_model")
        weight = dict(model.named_parameters())[target]
        with torch.no_grad():
            weight += scale * (b.float() @ a.float()).to(weight.dtype)


def load_into(model, state: dict[str, torch.Tensor], source) -> None:
    """Put weights in either shipped layout (`read_weights`) into a `fresh()` model: load them, merge any LoRA."""
    own = model.state_dict()
    # a shape mismatch would otherwise surface as load_state_dict's traceback
    foreign = [k for k in state if "lora_" not in k and (k not in own or own[k].shape != state[k].shape)]
    if foreign:
        raise AssetMissingError(f"{source} does not match this model (e.g. {foreign[0]}); rebuild it with `headwise testbed train`.")
    if is_full(state):  # a missing weight would silently stay SmolLM2's
        missing = [k for k in trainable_state(model, full=True) if k not in state]
        if missing:
            raise AssetMissingError(f"{source} is a full fine-tune without {missing[0]}; rebuild it with "
                                    "`headwise testbed train --full-ft`.")
    model.load_state_dict({k: v.float() for k, v in state.items() if "lora_" not in k}, strict=False)
    merge_lora(model, state)


def build(weights: Path | None = None, out: Path | None = None) -> Path:
    """Assemble emoji-llava (SmolLM2 + shipped weights, adapter merged) into a transformers folder."""
    weights = _existing(weights)
    out = out or cache_dir() / "emoji-llava"
    state = read_weights(weights, "emoji-llava weights")
    model, proc = fresh()
    load_into(model, state, weights)
    save_pretrained(out, model, proc)
    (out / SOURCE).write_text(json.dumps({"weights_sha256": sha256(weights)}))
    return out


SOURCE = "headwise-source.json"


def emoji_llava_dir(weights: Path | None = None) -> Path:
    """The cached emoji-llava folder for `weights` (default: the shipped ones), assembled on first use.

    Other weights (e.g. from `headwise testbed train`) get a folder named by their hash, so they never
    replace the default model and are built once however often they are loaded.
    """
    shipped, weights = shipped_weights(), _existing(weights)
    digest = sha256(weights)
    default = weights == shipped or (shipped.is_file() and digest == sha256(shipped))
    name = "emoji-llava" if default else f"emoji-llava-{digest[:12]}"
    folder = cache_dir() / name
    source = folder / SOURCE
    if source.is_file() and json.loads(source.read_text()).get("weights_sha256") == digest:
        return folder
    require("smollm2")
    check_out(folder.parent, "HEADWISE_CACHE")  # before SmolLM2 loads for an assembly it could not keep
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and swap it in with one rename, so no reader sees half a model.
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{name}-") as tmp:
        built = build(weights, out=Path(tmp) / "model")
        if folder.exists():
            shutil.rmtree(folder)
        built.rename(folder)
    return folder


__all__ = ["build", "emoji_llava_dir", "fresh", "processor", "read_weights"]
