"""`load_model`: the one way headwise loads a model, from an alias, a local folder or a hub id."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, NamedTuple

from headwise.errors import HeadwiseError


class LoadedModel(NamedTuple):
    model: Any
    tokenizer: Any  # a tokenizer for language models, a processor for vision-language models


DTYPES = ("float32", "bfloat16", "float16")
HUB_TIMEOUT = 5.0  # seconds for the one request that asks the hub whether a model exists
# alias -> "module:function" returning the local folder to load (may raise AssetMissingError). Strings, resolved
# on use, so that loading models imports no package that provides one (the testbed builds emoji-llava).
ALIASES: dict[str, str] = {
    "smollm2": "headwise.assets.registry:smollm2_dir",
    "gemma3-270m": "headwise.assets.registry:gemma3_270m_dir",
    "emoji-llava": "headwise.testbed.model:emoji_llava_dir",
}
# Weights from `headwise testbed train` (an emoji_llava.safetensors): a function of the file returning the folder
# assembled from them with SmolLM2, as the shipped emoji-llava is.
SAFETENSORS_MODEL = "headwise.testbed.model:emoji_llava_dir"


def register_alias(name: str, target: str) -> None:
    """Make `name` load the folder that `target` ("package.module:function") returns."""
    ALIASES[name] = target


def _call(target: str, *args):
    import importlib

    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)(*args)


def _is_vlm(config) -> bool:
    return getattr(config, "vision_config", None) is not None


def _resolve(name_or_path: str) -> tuple[str, str | None]:
    """The path or hub id to load and, for a folder holding only GGUF files, the GGUF file name."""
    if name_or_path in ALIASES:
        return str(_call(ALIASES[name_or_path])), None
    path = Path(name_or_path).expanduser()
    if path.suffix == ".safetensors":
        # weights from `headwise testbed train`: assembled with SmolLM2 like the shipped emoji-llava
        # (checked by build() before anything is assembled; a cached folder was checked when built)
        return str(_call(SAFETENSORS_MODEL, path)), None
    if path.suffix == ".gguf":
        if not path.is_file():
            raise HeadwiseError(f"model file {path} does not exist.")
        return str(path.parent), path.name
    looks_local = path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if not looks_local:
        _check_hub_id(name_or_path)
        return name_or_path, None  # a hub id such as "HuggingFaceTB/SmolLM2-135M-Instruct"
    if not path.exists():
        raise HeadwiseError(f"model path {path} does not exist; pass an alias ({', '.join(ALIASES)}), a local model folder or a hub id.")
    if not path.is_dir():
        raise HeadwiseError(f"model path {path} is a file, not a model folder (or a .gguf file).")
    if (path / "config.json").is_file():
        return str(path), None
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return str(path), ggufs[0].name
    raise HeadwiseError(
        f"{path} holds no model: expected a config.json (a transformers model folder) or exactly one .gguf file."
    )


def _unknown(name: str, why: str) -> HeadwiseError:
    close = difflib.get_close_matches(name, list(ALIASES), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else "."
    return HeadwiseError(f"model {name!r} is not an alias ({', '.join(ALIASES)}), a local path or a cached hub model, "
                         f"and {why}{hint}")


def _check_hub_id(name: str) -> None:
    """Refuse at once a name the hub cannot serve, instead of transformers' half a minute of retries.

    A model in the local hub cache passes; otherwise one quick request asks the hub whether the model exists.
    """
    import huggingface_hub as hub
    from huggingface_hub import errors

    try:
        if isinstance(hub.try_to_load_from_cache(name, "config.json"), str):
            return
    except errors.HFValidationError:
        raise _unknown(name, "it is not a valid hub id") from None
    if hub.constants.is_offline_mode():
        raise _unknown(name, "the hub is off (HF_HUB_OFFLINE)")
    try:
        hub.model_info(name, timeout=HUB_TIMEOUT)
    except errors.GatedRepoError:
        return  # it exists; access is transformers' to report
    except errors.RepositoryNotFoundError:
        raise _unknown(name, f"the hub at {hub.constants.ENDPOINT} has no such model (or it is private: log in "
                             "with `hf auth login`)") from None
    except errors.HfHubHTTPError:
        return  # the hub answered; let transformers report whatever else it says
    except Exception as err:  # noqa: BLE001 - any transport error (DNS, refused, timeout, proxy) means no hub
        raise _unknown(name, f"the hub at {hub.constants.ENDPOINT} cannot be reached ({type(err).__name__})") from None


def load_model(name_or_path: str, *, dtype: str | Any = "auto", device: str | None = None,
               attn_implementation: str | None = None, trust_remote_code: bool = False,
               **kwargs) -> LoadedModel:
    """Load a model with its tokenizer (language models) or processor (vision-language models).

    Args:
        name_or_path: an alias (`smollm2`, `gemma3-270m`), a local folder, a .gguf file, emoji-llava weights
            (an emoji_llava.safetensors from `headwise testbed train`) or a hub id.
        dtype: "auto" (the checkpoint's dtype; float32 on CPU), "float32", "bfloat16", "float16" or a torch dtype.
        device: "cpu", "cuda", "cuda:1"...; defaults to CUDA when available.
        attn_implementation: "sdpa" (default), "eager", "flash_attention_2"...
        trust_remote_code: allow code from the hub; never implied.

    Returns:
        LoadedModel(model, tokenizer), the model in eval mode.
    """
    import torch
    import transformers as tf

    config, target, common = _config(name_or_path, trust_remote_code)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise HeadwiseError(f"--device {device} needs CUDA, and this torch sees no CUDA device; use --device cpu.")
    if isinstance(dtype, str) and dtype != "auto":
        if dtype not in DTYPES:
            raise HeadwiseError(f"unknown dtype {dtype!r}; use auto, {', '.join(DTYPES)}.")
        dtype = getattr(torch, dtype)
    if dtype == "auto" and device == "cpu":
        dtype = torch.float32  # half-precision matmuls are slow or unsupported on many CPUs
    try:
        vlm = _is_vlm(config)
        auto_model = tf.AutoModelForImageTextToText if vlm else tf.AutoModelForCausalLM
        model = auto_model.from_pretrained(target, dtype=dtype, attn_implementation=attn_implementation,
                                           **common, **kwargs)
        auto_tok = tf.AutoProcessor if vlm else tf.AutoTokenizer
        tokenizer = auto_tok.from_pretrained(target, **common)
    except (OSError, ValueError, KeyError) as err:
        raise _load_error(name_or_path, err) from err
    return LoadedModel(model.to(device).eval(), tokenizer)


def check_model(name_or_path: str, trust_remote_code: bool = False) -> None:
    """Fail now, with load_model's message, if the model cannot be found; reads only its config."""
    _config(name_or_path, trust_remote_code)


def _config(name_or_path: str, trust_remote_code: bool):
    """The model's config, the path or hub id to load from, and the keyword arguments every loader gets."""
    import transformers as tf

    target, gguf = _resolve(name_or_path)
    common = dict(trust_remote_code=trust_remote_code, **({"gguf_file": gguf} if gguf else {}))
    try:
        return tf.AutoConfig.from_pretrained(target, **common), target, common
    except (OSError, ValueError, KeyError) as err:
        raise _load_error(name_or_path, err) from err


def _load_error(name_or_path: str, err: Exception) -> HeadwiseError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return HeadwiseError(f"could not load model {name_or_path!r}: {first}")


def get_peft_model(model, peft_config, **kwargs):
    """peft.get_peft_model without the FutureWarning it provokes on every model it wraps.

    peft asks `getattr(model, "is_gradient_checkpointing", True)`, a property transformers 5 deprecated (for
    `is_activation_checkpointing`); the warning is about peft's call, not the user's, so it is silenced here only.
    """
    import warnings

    from peft import get_peft_model as wrap

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return wrap(model, peft_config, **kwargs)
