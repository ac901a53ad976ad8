"""`headwise demo`: what the library does, on the offline models, in a few minutes on a CPU."""

from __future__ import annotations

from pathlib import Path

import typer


def run_demo(out: str, windows: int, seq_len: int) -> None:
    from headwise.cl.run import demo as cl_demo
    from headwise.compress.run import demo as compress_demo
    from headwise.eval.ablation import ScanConfig, open_run, run_scan, scan_text
    from headwise.models import load_model
    from headwise.testbed.model import shipped_weights

    out = Path(out)
    typer.echo("== heads: which of SmolLM2's 270 heads matter for Wikipedia text? (ablation scan)")
    cfg = ScanConfig(seq_len=seq_len, windows=windows, batch_size=8)
    model, tok = load_model("smollm2")
    result = run_scan(model, tok, cfg, open_run(out / "heads-scan", "smollm2", "auto", cfg, model), title="smollm2")
    typer.echo(scan_text(result, top=10))
    typer.echo("\n== SEEKR: continual fine-tuning of SmolLM2 on 2 Wikipedia tasks (LoRA)")
    typer.echo(cl_demo(out / "cl-seekr"))
    typer.echo("\n== UniCuCo: the shipped StratNet serves 3 compression requests for SmolLM2")
    typer.echo(compress_demo(out / "compress"))
    typer.echo("\n== VHR: emoji-llava describes 30 test scenes with greedy and with VHR decoding (CHAIR, POPE)")
    if shipped_weights().is_file():
        from headwise.testbed.demo import run_vhr_demo

        typer.echo(run_vhr_demo(out / "vhr"))
    else:
        typer.echo(f"skipped: {shipped_weights()} is not there; train it with `headwise testbed train`.")
