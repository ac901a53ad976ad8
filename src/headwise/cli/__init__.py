"""The `headwise` command line. Bad input prints one sentence and exits with status 2."""

from __future__ import annotations

import sys

import typer

from headwise.cli import assets as assets_cmd
from headwise.cli import cl as cl_cmd
from headwise.cli import compress as compress_cmd
from headwise.cli import eval as eval_cmd
from headwise.cli import heads as heads_cmd
from headwise.cli import testbed as testbed_cmd
from headwise.cli import vhr as vhr_cmd
from headwise.cli.common import fail
from headwise.errors import HeadwiseError

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
    out: str = typer.Option("runs/demo", help="Directory for the demo's run directories."),
    windows: int = typer.Option(1, help="Text windows the head scan averages over."),
    seq_len: int = typer.Option(192, help="Tokens per window."),
) -> None:
    """The demo on the offline models: a head-ablation scan of SmolLM2, a 2-task SEEKR run, 3 UniCuCo requests from
    the shipped StratNet, and greedy vs VHR captions of 30 testbed scenes with CHAIR, POPE and an example figure
    (several minutes on 2 CPU cores; each part writes its own run directory under --out)."""
    from headwise.cli.demo import run_demo
    from headwise.runs import out_dir

    if windows < 1 or seq_len < 2:  # checked before minutes of loading, not after
        raise HeadwiseError(f"--windows must be at least 1 and --seq-len at least 2, got {windows} and {seq_len}.")
    run_demo(str(out_dir(out)), windows=windows, seq_len=seq_len)


def main() -> None:
    try:
        app()
    except HeadwiseError as err:
        fail(str(err))
    except KeyboardInterrupt:
        typer.echo("interrupted; finished work is saved in the run directory, rerun the same command to resume.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
