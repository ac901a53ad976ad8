"""`headwise compress`: train a UniCuCo StratNet once (`fit`), then serve any number of compression requests
(`serve`) without a per-request search."""

from __future__ import annotations

from pathlib import Path

import typer

from headwise.cli.common import DEVICE, DTYPE, JSON, MODEL, TRUST, emit, load, out_option, settings
from headwise.errors import HeadwiseError

app = typer.Typer(help="UniCuCo: one StratNet that maps any size/quality request to a pruning strategy.",
                  no_args_is_help=True)

PRESET = typer.Option(None, "--preset", help="Start from a named preset of the pruning settings: faithful (count the "
                      "weights pruned per row as locuslab/wanda does, int(), not rounded); explicit options override "
                      "it. Recorded in the run and the StratNet.")


@app.command()
def fit(
    ctx: typer.Context,
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
    preset: str = PRESET,
    out: str = out_option(None, "Run directory; default runs/compress-fit/<time>. Rerun with the same one to resume."),
    dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST, as_json: bool = JSON,
) -> None:
    """Fit the GP surrogate and StratNet within an evaluation budget; writes stratnet.safetensors/json."""
    from headwise.compress.config import CalibConfig, FitConfig
    from headwise.compress.fit import check_config
    from headwise.compress.run import open_fit_run, run_fit
    from headwise.config import check_preset

    check_preset(preset, CalibConfig, FitConfig)
    calib_cfg = settings(CalibConfig, ctx, preset, {"data": data, "seq_len": seq_len, "windows": windows,
                                                    "ppl_windows": ppl_windows, "method": method})
    fit_cfg = FitConfig(space=space, evals=evals, initial=initial, batch=batch, steps=steps, max_ratio=max_ratio,
                        max_sparsity=min(0.8, max_ratio) if space == "unstructured" else 0.5, spread=spread,
                        serve_beta=serve_beta, seed=seed)
    check_config(fit_cfg, calib_cfg)  # before minutes of loading
    m, tok = load(model, dtype, device, trust_remote_code)
    run = open_fit_run(out, model, dtype, calib_cfg, fit_cfg, preset)
    summary = run_fit(m, tok, model, calib_cfg, fit_cfg, run, progress=not as_json)
    emit(summary, as_json, f"{summary['evaluations']} true evaluations in {summary['rounds']} rounds, "
                           f"{summary['fit_seconds']:.1f} s\nStratNet: {run.dir}")


@app.command()
def prune(
    ctx: typer.Context,
    model: str = MODEL,
    sparsity: float = typer.Option(None, help="Fraction of every block's weights pruned (unstructured; 0 < s <= "
                                   "0.95). With an N:M --pattern it is N/M, the default there."),
    pattern: str = typer.Option("unstructured", help="unstructured, or N:M (e.g. 2:4, NVIDIA's sparse tensor "
                                "cores): in every group of M consecutive input weights of a row the N "
                                "lowest-scored are pruned, as locuslab/wanda's --sparsity_type 2:4."),
    method: str = typer.Option("wanda", help="Pruner: wanda (input norms, no weight update) or sparsegpt "
                               "(Hessians, OBS weight updates; minutes on CPU)."),
    data: str = typer.Option("wiki-en", help="Text: wiki-en/fr/es (train split calibrates, test split scores) or a UTF-8 file."),
    seq_len: int = typer.Option(128, help="Tokens per window."),
    windows: int = typer.Option(4, help="Calibration windows."),
    ppl_windows: int = typer.Option(4, help="Test windows for perplexity."),
    save: bool = typer.Option(False, "--save", help="Save the pruned model as safetensors in OUT/model."),
    preset: str = PRESET,
    out: str = out_option(None, "Run directory; default runs/compress-prune/<time>."),
    dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST, as_json: bool = JSON,
) -> None:
    """Prune every block uniformly (one sparsity, or an N:M pattern) with no StratNet; reports sparsity, KL and
    perplexity."""
    from headwise.compress.config import CalibConfig, nm_pattern
    from headwise.compress.run import open_prune_run, run_prune
    from headwise.config import check_preset

    check_preset(preset, CalibConfig)
    calib_cfg = settings(CalibConfig, ctx, preset, {"data": data, "seq_len": seq_len, "windows": windows,
                                                    "ppl_windows": ppl_windows, "method": method, "pattern": pattern})
    sparsity = check_sparsity(sparsity, nm_pattern(calib_cfg.pattern))
    m, tok = load(model, dtype, device, trust_remote_code)
    run = open_prune_run(out, model, dtype, calib_cfg, sparsity, save, preset)
    result = run_prune(m, tok, calib_cfg, sparsity, run, save)
    emit(result, as_json, f"sparsity {result['sparsity']:.3f}, KL {result['kl']:.4f}, perplexity "
                          f"{result['ppl']:.2f}, {result['seconds']:.1f} s\nrun: {run.dir}")


def check_sparsity(sparsity: float | None, nm: tuple[int, int] | None) -> float:
    """--sparsity of `compress prune`: given and in (0, 0.95] when unstructured, N/M (or not given) with N:M."""
    from headwise.compress.config import MAX_SPARSITY

    if nm is not None:
        if sparsity is not None and abs(sparsity - nm[0] / nm[1]) > 1e-9:
            raise HeadwiseError(f"the {nm[0]}:{nm[1]} pattern prunes exactly {nm[0] / nm[1]:g} of every block; "
                                "leave out --sparsity or give that.")
        return nm[0] / nm[1]
    if sparsity is None or not 0 < sparsity <= MAX_SPARSITY:
        raise HeadwiseError(f"--sparsity must be given and lie in (0, {MAX_SPARSITY}], got {sparsity}.")
    return sparsity


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
    lm_eval: str = typer.Option(None, "--lm-eval", help="Also score each pruned model with lm-eval on these tasks, "
                                                        "e.g. headwise_wiki_ppl,headwise_wiki_topic (local; lm-eval's "
                                                        "own tasks need their datasets from the hub)."),
    lm_eval_limit: int = typer.Option(0, "--lm-eval-limit", help="With --lm-eval: documents per task (0: all)."),
    dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST, as_json: bool = JSON,
) -> None:
    """Map each request to a strategy, prune, measure sparsity, KL and perplexity; writes OUT/results.jsonl."""
    from headwise.compress.run import open_serve_run, run_serve, serve_text
    from headwise.compress.serve import Server
    from headwise.compress.strategy import read_requests

    tasks = check_lm_eval(lm_eval, lm_eval_limit)
    server = Server(stratnet)
    reqs = read_requests(requests)
    name = model or server.meta["model"]
    m, tok = load(name, dtype, device, trust_remote_code)
    server.check_model(m)  # before a run directory is made for a model it cannot serve
    run = open_serve_run(out, stratnet, requests, name, save, ppl, dtype, tasks, lm_eval_limit)
    result = run_serve(m, tok, server, reqs, run, save=save, ppl=ppl, progress=not as_json, lm_eval=tasks,
                       lm_eval_limit=lm_eval_limit)
    emit(result, as_json, serve_text(result))


def check_lm_eval(tasks: str | None, limit: int) -> list[str] | None:
    """--lm-eval's task names, checked against lm-eval's and headwise's tasks before anything loads."""
    if limit < 0:
        raise HeadwiseError(f"--lm-eval-limit must be 0 (all documents) or more, got {limit}.")
    if tasks is None:
        return None
    from headwise.integrations.lm_eval import check_tasks

    return check_tasks([t.strip() for t in tasks.split(",") if t.strip()])
