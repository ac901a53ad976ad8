"""The `headwise` model of lmms-eval: any VLM headwise loads, decoded by a registered decoding method.

    lmms-eval eval --model headwise --model_args pretrained=emoji-llava,method=vhr,alpha=2 --tasks ...

lmms-eval finds it through the entry-point group `lmms_eval.models` (pyproject.toml names `manifest`), so
nothing in lmms-eval is patched. `--model_args` are `pretrained` (an alias, a folder or a hub id, as
`headwise.models.load_model` reads it), `method` (greedy, vhr, vcd, pai: `headwise.vhr.methods.METHODS`),
`preset` (a preset of the method's config, e.g. VHR's `paper`), `dtype`, `device`, `seed`,
`trust_remote_code`, `attn_implementation`, and the method's own settings by their field names (`alpha`,
`layers=[1,2]`, `cd_alpha`, `pai_layers=[2,32]`...). Anything else is refused in one sentence that lists what
is valid. The model answers `generate_until` requests (POPE, CHAIR, captioning, short-answer VQA), one image
per request; the task's `max_new_tokens`, `do_sample`, `temperature`, `top_p`, `num_beams` and `until` apply.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import yaml

from headwise.config import Settings
from headwise.errors import HeadwiseError
from headwise.integrations import require

require("lmms_eval")

from lmms_eval.api.model import lmms  # noqa: E402 - only after require() has said which extra is missing

MODEL_ID = "headwise"
# The model arguments every method takes; the method's config fields come on top.
COMMON_ARGS = ("pretrained", "method", "preset", "dtype", "device", "seed", "trust_remote_code",
               "attn_implementation", "batch_size", "max_batch_size")
# generate() keywords a task's generation_kwargs may set; others (model-specific knobs of other backends) are
# not generate()'s and are left out.
GENERATE_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_p", "num_beams")


def manifest():
    """The entry point lmms-eval loads (group `lmms_eval.models`): the model id and where its class lives."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=f"{__name__}.Headwise")


def _value(cls: type[Settings], name: str, value: Any) -> Any:
    """A model-arg string in its field's form: lmms-eval turns numbers and booleans into Python values but
    leaves `[1,2]` and `none` as text."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    if isinstance(value, str) and value.lower() in ("none", "null"):
        return None
    if isinstance(value, str) and value.startswith("["):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise HeadwiseError(f"model arg {name}={value} is not a list like [1,2].") from None
    if isinstance(field.default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return value


def decoding(method: str = "vhr", preset: str | None = None, **options: Any) -> Settings:
    """The decoding method's config from model args: its preset, then the options given by field name."""
    from headwise.vhr.methods import METHODS

    if method not in METHODS:
        raise HeadwiseError(f"unknown method={method}; choose one of {', '.join(METHODS)}.")
    cls = METHODS[method].config
    unknown = sorted(set(options) - set(cls.field_names()))
    if unknown:
        valid = [*COMMON_ARGS, *cls.field_names()]
        raise HeadwiseError(f"unknown model arg{'s' * (len(unknown) > 1)} {', '.join(unknown)} for method={method}; "
                            f"valid: {', '.join(valid)}.")
    if preset is not None and preset not in cls.PRESETS:
        raise HeadwiseError(f"unknown preset={preset} for method={method}; "
                            f"{'choose one of ' + ', '.join(cls.PRESETS) if cls.PRESETS else 'it has no presets'}.")
    return cls.resolve(preset, {k: _value(cls, k, v) for k, v in options.items()})


def generate_kwargs(gen_kwargs: dict) -> tuple[dict, list[str]]:
    """(model.generate keywords, stop strings) from a task's generation_kwargs; temperature 0 means greedy."""
    until = gen_kwargs.get("until") or []
    until = [until] if isinstance(until, str) else list(until)
    kwargs = {k: gen_kwargs[k] for k in GENERATE_KEYS if gen_kwargs.get(k) is not None}
    if not kwargs.get("do_sample") or not kwargs.get("temperature", 1.0):
        kwargs.pop("temperature", None)
        kwargs.pop("top_p", None)
        kwargs["do_sample"] = False
    return kwargs, until


def cut(text: str, until: list[str]) -> str:
    """The text up to the first stop string."""
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text


class Headwise(lmms):
    """lmms-eval's view of a headwise model: `generate_until` through `headwise.vhr.generate`."""

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        """What lmms-eval calls with `--model_args`. A bad argument ends the run with its one sentence and exit
        status 2: lmms-eval's command line would print a traceback for any exception and exit 0."""
        try:
            return super().create_from_arg_string(arg_string, additional_config)
        except HeadwiseError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    def __init__(self, pretrained: str, method: str = "vhr", preset: str | None = None, dtype: str = "auto",
                 device: str | None = None, seed: int = 0, trust_remote_code: bool = False,
                 attn_implementation: str | None = None, batch_size: int | str = 1, max_batch_size: int | None = None,
                 **options: Any) -> None:
        super().__init__()
        from headwise.distributed import process_state
        from headwise.models import load_model

        self.method, self.seed = method, int(seed)
        self.config = decoding(method, preset, **options)  # refused before the model loads
        if not str(batch_size).isdigit() or int(batch_size) < 1:
            raise HeadwiseError(f"batch_size={batch_size} must be a whole number >= 1 (auto is not supported).")
        self.batch_size = int(batch_size)
        state = process_state()
        self._rank, self._world_size = state.process_index, state.num_processes
        if device is None and state.num_processes > 1:
            device = str(state.device)
        self.model, self.processor = load_model(str(pretrained), dtype=dtype, device=device,
                                                trust_remote_code=trust_remote_code,
                                                attn_implementation=attn_implementation)

    def generate_until(self, requests) -> list[str]:
        from tqdm.auto import tqdm

        from headwise.vhr import generate

        answers: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(json.dumps(req.args[1], sort_keys=True, default=str), []).append(i)
        bar = tqdm(total=len(requests), desc="headwise responding", disable=self.rank != 0)
        for indices in groups.values():
            kwargs, until = generate_kwargs(dict(requests[indices[0]].args[1]))
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start:start + self.batch_size]
                images, prompts = zip(*(self._inputs(requests[i]) for i in batch))
                texts = generate(self.model, self.processor, list(images), list(prompts), self.config,
                                 seed=self.seed, **kwargs).texts
                for i, text in zip(batch, texts):
                    answers[i] = cut(text, until)
                    self.cache_hook.add_partial("generate_until", requests[i].args[:2], answers[i])
                bar.update(len(batch))
        bar.close()
        return answers

    def _inputs(self, request):
        """(image, prompt) of one request: headwise's methods take one image per prompt."""
        context, _, doc_to_visual, doc_id, task, split = request.args
        visuals = doc_to_visual(self.task_dict[task][split][doc_id]) or []
        if len(visuals) != 1 or not hasattr(visuals[0], "convert"):
            raise HeadwiseError(f"task {task} gives {len(visuals)} visuals per question; the headwise model "
                                "answers about exactly one image.")
        return visuals[0].convert("RGB"), context

    def loglikelihood(self, requests):
        raise HeadwiseError("the headwise model decodes answers (generate_until tasks such as POPE and CHAIR); "
                            "its decoding methods do not change a loglikelihood task's scores.")

    def generate_until_multi_round(self, requests):
        raise HeadwiseError("the headwise model answers single-round tasks only.")
