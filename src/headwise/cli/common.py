"""Options and output helpers shared by every command."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer

MODEL = typer.Option(..., "--model", "-m", help="Alias (smollm2, gemma3-270m, emoji-llava), local model folder, .gguf file, emoji_llava.safetensors from "
                     "`headwise testbed train`, or hub id.")
DTYPE = typer.Option("auto", help="Weights dtype: auto (float32 on CPU), float32, bfloat16 or float16.")
DEVICE = typer.Option(None, help="Device (cpu, cuda, cuda:1...); CUDA when available.")
TRUST = typer.Option(False, "--trust-remote-code", help="Allow a hub model to run its own code. Off unless given.")
JSON = typer.Option(False, "--json", help="Print machine-readable JSON instead of text.")


# The output directory named on the command line (or by its default), for the Ctrl-C message.
REQUESTED_OUT: list[str] = []


def out_option(default: str | None, help: str, *, kind: str = "run") -> Any:
    """An output option whose location is checked as the command line is read, before any model loads.

    kind: "run" (a run directory; None means a new one under runs/), "optional" (a directory; None writes
    nothing) or "file" (a file to write).
    """
    def check(param: typer.CallbackParam, value: Any) -> Any:
        from headwise.runs import check_out

        if value is None and kind != "run":
            return value
        check_out("runs" if value is None else value, param.opts[0], file=kind == "file")
        if value is not None and kind != "file":
            REQUESTED_OUT.append(str(value))
        return value
    return typer.Option(default, help=help, callback=check)


def fail(message: str) -> NoReturn:
    message = message.rstrip()
    typer.echo(f"error: {message}", err=True)
    sys.exit(2)


def emit(obj: Any, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str) if as_json else text)


def load(model: str, dtype: str, device: str | None, trust_remote_code: bool, **kwargs):
    from headwise.models import load_model

    return load_model(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code, **kwargs)


def int_list(value: str | None, what: str) -> list[int] | None:
    """Parse "0,3,5-7" into [0, 3, 5, 6, 7]."""
    if value is None or not value.strip():
        return None
    out = []
    try:
        for part in value.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1))
            else:
                out.append(int(part))
    except ValueError:
        fail(f"{what} must be a comma-separated list of integers or ranges like 0,3,5-7, got {value!r}.")
    return out
