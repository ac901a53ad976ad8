"""`headwise demo`: what the library does, on the offline SmolLM2, in a few minutes on a CPU."""

from __future__ import annotations

from pathlib import Path

import typer


def run_demo(out: str, windows: int, seq_len: int) -> None:
    from headwise.cli.heads import run_scan, scan_summary
    from headwise.heads.scan import ScanConfig

    typer.echo("== heads: which of SmolLM2's 270 heads matter for Wikipedia text? (ablation scan)")
    result = run_scan("smollm2", ScanConfig(seq_len=seq_len, windows=windows, batch_size=8),
                      str(Path(out) / "heads-scan"))
    typer.echo(scan_summary(result, top=10))
