"""Options and helpers shared by every command: each option is declared once, with one meaning everywhere."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer

MODEL = typer.Option(..., "--model", "-m", help="Alias (smollm2, gemma3-270m, emoji-llava), local model folder, .gguf "
                     "file, emoji_llava.safetensors from `headwise testbed train`, or hub id.")
DTYPE = typer.Option("auto", help="Weights dtype: auto (float32 on CPU), float32, bfloat16 or float16.")
DEVICE = typer.Option(None, help="Device (cpu, cuda, cuda:1...); CUDA when available.")
TRUST = typer.Option(False, "--trust-remote-code", help="Allow a hub model to run its own code. Off unless given.")
JSON = typer.Option(False, "--json", help="Print machine-readable JSON instead of text.")
PRESET = typer.Option(None, "--preset", help="Start from a named preset of the method's settings (data next to its "
                      "config; the docs list them); options given explicitly override it. Recorded in the run.")

# Decoding, the same for `vhr describe`, `eval chair|pope --model` and `testbed evaluate` (VHR's settings are
# headwise.vhr.config.VHRConfig; its presets: paper, no-outlier-rule, image-only).
METHOD = typer.Option("vhr", help="Decoding method: greedy, vhr, vcd or pai.")
ALPHA = typer.Option(2.0, help="VHR: scale of the chosen heads (> 0; 1 changes nothing).")
LAYERS = typer.Option(None, help="VHR: reinforced layers, e.g. 1,17-29; default 1 plus the last 14/32 of the depth.")
HEADS = typer.Option("vhd", help="VHR: which heads to reinforce: vhd (the paper's choice), random (as many per layer "
                                  "and image, drawn with the seed) or complement (as many, drawn from those VHD did "
                                  "not choose).")
POSITIONS = typer.Option("all", help="VHR: where to scale the heads: all (the paper) or generated (only the positions "
                                     "that predict output tokens).")

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


def names(value: str) -> list[str]:
    """Parse "a, b,c" into ["a", "b", "c"]."""
    return [v.strip() for v in value.split(",") if v.strip()]


def given(ctx: typer.Context) -> set[str]:
    """The options the user set on purpose (command line or environment), as opposed to their defaults."""
    # By the enum's name: typer may bring its own copy of click's ParameterSource.
    return {name for name in ctx.params
            if getattr(ctx.get_parameter_source(name), "name", None) in ("COMMANDLINE", "ENVIRONMENT")}


def settings(cls, ctx: typer.Context, preset: str | None, options: dict[str, Any], explicit: set[str] | None = None):
    """`cls` (a Settings class) from a command's options named like its fields: the options' values, then the
    preset where `cls` has it, then the options given explicitly (`explicit`; by default those the user set,
    `given`), as headwise.config.apply_preset does."""
    from headwise.config import apply_preset

    explicit = given(ctx) if explicit is None else explicit
    base = {name: options[name] for name in cls.field_names() if name in options}
    return apply_preset(cls, preset, {k: v for k, v in base.items() if k in explicit}, base)


def vhr_settings(ctx: typer.Context, preset: str | None, alpha: float, layers: str | None, heads: str,
                 positions: str):
    """VHR's settings from the shared decoding options and --preset."""
    from headwise.vhr.config import VHRConfig

    return settings(VHRConfig, ctx, preset, {"alpha": alpha, "layers": int_list(layers, "--layers"), "heads": heads,
                                             "positions": positions})
