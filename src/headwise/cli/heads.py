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
    from headwise.heads.scan import ScanConfig

    config = ScanConfig(data=data, seq_len=seq_len, windows=windows, batch_size=batch_size,
                        layers=int_list(layers, "--layers"))
    result = run_scan(model, config, out, dtype=dtype, device=device, trust_remote_code=trust_remote_code,
                      progress=not as_json)
    emit(result, as_json, scan_summary(result, top))


def run_scan(model: str, config, out: str | None, dtype="auto", device=None, trust_remote_code=False,
             progress=True) -> dict:
    """Load, scan, and write results.json plus heatmap.png into the run directory; returns the results."""
    from dataclasses import asdict

    from headwise.heads import layout
    from headwise.heads.scan import delta_matrix, scan as do_scan
    from headwise.plots import heatmap
    from headwise.runs import Run

    m, tok = load(model, dtype, device, trust_remote_code)
    lay = layout(m)
    for layer in config.layers or ():
        lay.check_layer(layer)  # refuse bad layers before a run directory is created for them
    run = Run(out, "heads scan", {"model": model, "dtype": dtype, **asdict(config)})
    result = do_scan(m, tok, config, run=run, progress=progress)
    marks = [(t["layer"], t["head"]) for t in result["top_heads"][:10]]
    plot = heatmap(delta_matrix(result), run.path("heatmap.png"), f"{model}: perplexity increase when a head is ablated",
                   "ppl increase (%)", marks=marks,
                   marks_label=f"the {len(marks)} heads whose ablation raises perplexity most")
    result |= {"run_dir": str(run.dir), "plot": str(plot)}
    run.finish(result)
    return result


def scan_summary(result: dict, top: int) -> str:
    lines = [f"baseline perplexity {result['baseline_ppl']:.3f} on {result['scan']['tokens']} tokens",
             "most important heads (perplexity increase when ablated):"]
    for t in result["top_heads"][:top]:
        lines.append(f"  layer {t['layer']:2d} head {t['head']:2d}  +{t['ppl_increase']:.3f}")
    lines += [f"results: {result['run_dir']}/results.json", f"plot:    {result['plot']}"]
    return "\n".join(lines)
