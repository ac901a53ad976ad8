"""`headwise heads`: show a model's head layout and scan heads by ablation."""

from __future__ import annotations

import typer

from headwise.cli.common import DEVICE, DTYPE, JSON, MODEL, TRUST, emit, int_list, load, out_option

app = typer.Typer(help="Inspect and score the attention heads of a model.", no_args_is_help=True)


@app.command()
def show(model: str = MODEL, dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST,
         as_json: bool = JSON) -> None:
    """Print the text decoder's head layout: layers, query heads, key/value heads, head size."""
    from headwise.heads import layout

    m, _ = load(model, dtype, device, trust_remote_code)
    info = layout(m).to_dict()
    emit(info, as_json, "\n".join(f"{k:17s} {v}" for k, v in info.items()))


@app.command()
def scan(
    model: str = MODEL,
    data: str = typer.Option("wiki-en", help="Text: wiki-en, wiki-fr, wiki-es (test split) or a UTF-8 file."),
    out: str = out_option(None, "Run directory; default runs/heads-scan/<time>. Rerun with the same one to resume."),
    seq_len: int = typer.Option(256, help="Tokens per text window."),
    windows: int = typer.Option(4, help="Number of text windows to average over."),
    batch_size: int = typer.Option(8, help="Rows (one ablated head on one window) per forward pass."),
    layers: str = typer.Option(None, help="Layers to scan, e.g. 0,4,10-12; all when omitted."),
    top: int = typer.Option(10, help="How many of the most important heads to print."),
    dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST, as_json: bool = JSON,
) -> None:
    """Ablate each head in turn and measure the perplexity increase; writes results.json and a heatmap."""
    from headwise.eval.ablation import ScanConfig, open_run, run_scan, scan_text

    config = ScanConfig(data=data, seq_len=seq_len, windows=windows, batch_size=batch_size,
                        layers=int_list(layers, "--layers"))
    m, tok = load(model, dtype, device, trust_remote_code)
    run = open_run(out, model, dtype, config, m)
    result = run_scan(m, tok, config, run, title=model, progress=not as_json)
    emit(result, as_json, scan_text(result, top))
