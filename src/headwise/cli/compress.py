"""`headwise compress`: train a UniCuCo StratNet once (`fit`), then serve any number of compression requests
(`serve`) without a per-request search."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer

from headwise.cli.common import DEVICE, DTYPE, JSON, MODEL, TRUST, emit, load, out_option

app = typer.Typer(help="UniCuCo: one StratNet that maps any size/quality request to a pruning strategy.",
                  no_args_is_help=True)

@app.command()
def fit(
    model: str = MODEL,
    space: str = typer.Option("unstructured", help="unstructured (one sparsity ratio per block) or depth (blocks removed)."),
    method: str = typer.Option("wanda", help="Unstructured pruner: wanda (cached input norms, no weight update; a "
                               "strategy applies in about a second) or sparsegpt (cached per-layer Hessians, OBS "
                               "weight updates; tens of seconds per strategy on CPU, and it needs many more "
                               "calibration tokens than a layer has inputs, or it fits them). serve uses the "
                               "StratNet's own."),
    evals: int = typer.Option(48, help="Budget of true evaluations (prune + KL on calibration tokens)."),
    initial: int = typer.Option(16, help="Evaluations of the initial design, spread over sparsities."),
    batch: int = typer.Option(4, help="New evaluations per round, proposed by StratNet."),
    steps: int = typer.Option(400, help="StratNet Adam steps per round."),
    data: str = typer.Option("wiki-en", help="Text: wiki-en/fr/es (train split calibrates, test split scores) or a UTF-8 file."),
    seq_len: int = typer.Option(128, help="Tokens per window."),
    windows: int = typer.Option(4, help="Calibration windows (the pruner's statistics and the KL the fit "
                                "optimises). With 2 (256 tokens) StratNet fitted those tokens and lost to uniform "
                                "sparsity on held-out text at low sparsity; 4 did not (docs/unicuco.md)."),
    ppl_windows: int = typer.Option(4, help="Test windows for perplexity when serving."),
    max_ratio: float = typer.Option(0.9, help="Largest per-block sparsity StratNet may output."),
    spread: float = typer.Option(0.05, help="Trust region (unstructured): each block's ratio is the strategy's mean "
                                 "plus spread x (tanh(a_i) - mean_j tanh(a_j)), so within 2 x spread of the mean and "
                                 "within spread when half the blocks go up and half down; it keeps StratNet where "
                                 "the GP has data. 0 lifts it."),
    serve_beta: float = typer.Option(-1.0, help="GP bound the served StratNet optimises: mean - beta * std of "
                                     "log KL; negative is pessimistic."),
    seed: int = typer.Option(0, help="Seed of the initial design and StratNet."),
    out: str = out_option(None, "Run directory; default runs/compress-fit/<time>. Rerun with the same one to resume."),
    dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST, as_json: bool = JSON,
) -> None:
    """Fit the GP surrogate and StratNet within an evaluation budget; writes stratnet.safetensors/json."""
    from headwise.compress.config import CalibConfig, FitConfig
    from headwise.compress.fit import check_config, fit as do_fit
    from headwise.runs import Run

    calib_cfg = CalibConfig(data=data, seq_len=seq_len, windows=windows, ppl_windows=ppl_windows, method=method)
    fit_cfg = FitConfig(space=space, evals=evals, initial=initial, batch=batch, steps=steps, max_ratio=max_ratio,
                        max_sparsity=min(0.8, max_ratio) if space == "unstructured" else 0.5, spread=spread,
                        serve_beta=serve_beta, seed=seed)
    check_config(fit_cfg, calib_cfg)
    m, tok = load(model, dtype, device, trust_remote_code)
    run = Run(out, "compress fit", {"model": model, "dtype": dtype, "calibration": asdict(calib_cfg),
                                    "fit": asdict(fit_cfg)})
    summary = do_fit(m, tok, model, calib_cfg, fit_cfg, run, progress=not as_json)
    summary["run_dir"] = str(run.dir)
    run.finish(summary)
    emit(summary, as_json, f"{summary['evaluations']} true evaluations in {summary['rounds']} rounds, "
                           f"{summary['fit_seconds']:.1f} s\nStratNet: {run.dir}")


@app.command()
def serve(
    stratnet: str = typer.Option(..., help="A shipped StratNet by name (smollm2 or gemma3-270m, unstructured), or a "
                                           "directory holding stratnet.safetensors and stratnet.json (a fit run)."),
    requests: Path = typer.Option(..., help='JSONL, one request a line: {"sparsity": 0.5} or {"preference": \\[size, quality]}, optional "id".'),
    out: str = out_option(None, "Output directory: results.jsonl, plots, and with --save one model folder per id; default "
                                 "runs/compress-serve/<time>."),
    model: str = typer.Option(None, "--model", "-m", help="Model to prune; default the one the StratNet was trained for."),
    save: bool = typer.Option(False, "--save", help="Save each pruned model as safetensors in OUT/<id>/."),
    ppl: bool = typer.Option(True, help="Measure test perplexity of each pruned model."),
    dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST, as_json: bool = JSON,
) -> None:
    """Map each request to a strategy, prune, measure sparsity, KL and perplexity; writes OUT/results.jsonl."""
    result = run_serve(stratnet, requests, out, model, save, ppl, dtype, device, trust_remote_code, not as_json)
    emit(result, as_json, serve_summary(result))


def run_serve(stratnet, requests, out, model=None, save=False, ppl=True, dtype="auto", device=None,
              trust_remote_code=False, progress=True) -> dict:
    import time

    from headwise.compress.fit import calibration
    from headwise.compress.plots import profiles
    from headwise.compress.serve import Server, serve as do_serve
    from headwise.compress.strategy import read_requests
    from headwise.runs import Run

    server = Server(stratnet)
    reqs = read_requests(requests)
    name = model or server.meta["model"]
    m, tok = load(name, dtype, device, trust_remote_code)
    server.check_model(m)
    run = Run(out, "compress serve", {"stratnet": str(stratnet), "requests": str(requests), "model": name,
                                      "save": save, "ppl": ppl, "dtype": dtype})
    t0 = time.perf_counter()
    calib = calibration(m, tok, server.calib_config, run)
    rows = do_serve(m, tok, server, reqs, calib, run, save=save, ppl=ppl, progress=progress)
    plot = profiles(rows, server.space, run.path("profiles.png"))
    result = {"requests": len(rows), "seconds": time.perf_counter() - t0, "run_dir": str(run.dir),
              "results": str(run.path("results.jsonl")), "plot": str(plot), "rows": rows}
    run.finish({k: v for k, v in result.items() if k != "rows"})
    return result


def serve_summary(result: dict) -> str:
    lines = [f"{'id':10s} {'sparsity':>8s} {'kl':>8s} {'ppl':>8s}"]
    for r in result["rows"]:
        ppl = f"{r['ppl']:8.2f}" if r.get("ppl") is not None else "       -"
        lines.append(f"{r['id']:10s} {r['sparsity']:8.3f} {r['kl']:8.4f} {ppl}")
    lines.append(f"{result['requests']} requests in {result['seconds']:.1f} s; results: {result['results']}")
    return "\n".join(lines)


def demo(out: Path) -> str:
    """Serve three requests from the StratNet shipped for smollm2; returns a short summary."""
    from headwise.runs import atomic_write

    out = Path(out)
    requests = out / "requests.jsonl"
    atomic_write(requests, '{"id": "light", "sparsity": 0.3}\n{"id": "half", "sparsity": 0.5}\n'
                           '{"id": "size-first", "preference": [0.8, 0.2]}\n')
    result = run_serve("smollm2", requests, str(out / "serve"), progress=False)
    return serve_summary(result)
