"""The `headwise` command line. Bad input prints one sentence and exits with status 2."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import NoReturn

import typer

from headwise.cli import assets as assets_cmd
from headwise.cli import cl as cl_cmd
from headwise.cli import compress as compress_cmd
from headwise.cli import eval as eval_cmd
from headwise.cli import heads as heads_cmd
from headwise.cli import testbed as testbed_cmd
from headwise.cli import vhr as vhr_cmd
from headwise.cli.common import REQUESTED_OUT, fail, out_option
from headwise.errors import HeadwiseError
from headwise.runs import OPENED

app = typer.Typer(
    help="Find and steer individual attention heads of HuggingFace transformers models.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)
app.add_typer(assets_cmd.app, name="assets")
app.add_typer(heads_cmd.app, name="heads")
app.add_typer(vhr_cmd.app, name="vhr")
app.add_typer(eval_cmd.app, name="eval")
app.add_typer(testbed_cmd.app, name="testbed")
app.add_typer(compress_cmd.app, name="compress")
app.add_typer(cl_cmd.app, name="cl")


@app.command()
def demo(
    out: str = out_option("runs/demo", "Directory for the demo's run directories."),
    windows: int = typer.Option(1, help="Text windows the head scan averages over."),
    seq_len: int = typer.Option(192, help="Tokens per window."),
) -> None:
    """The demo on the offline models: a head-ablation scan of SmolLM2, a 2-task SEEKR run, 3 UniCuCo requests from
    the shipped StratNet, and greedy vs VHR captions of 30 testbed scenes with CHAIR, POPE and an example figure
    (several minutes on 2 CPU cores; each part writes its own run directory under --out)."""
    from headwise.cli.demo import run_demo

    if windows < 1 or seq_len < 2:  # checked before minutes of loading, not after
        raise HeadwiseError(f"--windows must be at least 1 and --seq-len at least 2, got {windows} and {seq_len}.")
    run_demo(out, windows=windows, seq_len=seq_len)  # --out was checked as the command line was read


def main() -> None:
    REQUESTED_OUT.clear()  # what this command writes, named if it is interrupted
    OPENED.clear()
    try:
        app()
    except HeadwiseError as err:
        fail(str(err))
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit as err:
        # typer turns Ctrl-C into exit 130 before it gets here; its KeyboardInterrupt is down the chain
        if err.code == 130 and _caused_by_ctrl_c(err):
            _interrupted()
        raise


def _caused_by_ctrl_c(err: BaseException | None) -> bool:
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def _interrupted() -> NoReturn:
    """Say where the finished work is and the command that resumes it; exit 130 like any Ctrl-C."""
    from tqdm import tqdm

    # A progress bar left open redraws itself when it is collected, after this message; close them first so the
    # message is the last line the user sees.
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
    command = "headwise " + shlex.join(sys.argv[1:])
    if REQUESTED_OUT and Path(REQUESTED_OUT[0]).exists():
        where = REQUESTED_OUT[0]
    elif OPENED and not REQUESTED_OUT:
        where = str(OPENED[0].dir)
        if OPENED[0].defaulted:
            command += f" --out {shlex.quote(where)}"
    else:
        typer.echo("interrupted before anything was saved.", err=True)
        sys.exit(130)
    typer.echo(f"interrupted; finished work is saved in {where}; rerun `{command}` to resume.", err=True)
    sys.exit(130)


if __name__ == "__main__":
    main()
