"""headwise inside the evaluation harnesses its users already run.

- `lmms`: the `headwise` model of lmms-eval (`--model headwise --model_args pretrained=...,method=vhr,alpha=2`),
  registered through lmms-eval's entry-point group `lmms_eval.models`; any registered decoding method
  (`headwise.vhr.methods.METHODS`) with its settings.
- `lmms_tasks`: local lmms-eval tasks, POPE and CHAIR on testbed scenes, scored by headwise's pinned metrics.
- `lm_eval`: local lm-eval tasks (Wikipedia perplexity, a topic multiple choice) and the scoring of a model in
  memory, which `compress serve --lm-eval` runs on every served model.

Each harness is an optional extra (`pip install "headwise[lmms]"`, `pip install "headwise[lm-eval]"`); the
modules that need one say which when it is missing.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from headwise.errors import HeadwiseError

EXTRAS = {"lmms_eval": "lmms", "lm_eval": "lm-eval"}


def require(module: str) -> ModuleType:
    """Import a harness, or say in one sentence which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if err.name is None or err.name.split(".")[0] != module:
            raise  # the harness is there but one of its own imports failed: its message is the useful one
        raise HeadwiseError(f"{module} is not installed; install it with pip install \"headwise[{EXTRAS[module]}]\".") \
            from None
