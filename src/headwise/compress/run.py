"""The UniCuCo recipes: what `headwise compress fit` and `compress serve` run, as plain functions of a loaded
model, its tokenizer, the settings and the run directory. The CLI, the benchmarks and the tests call these."""

from __future__ import annotations

import time
from pathlib import Path

from headwise.compress.config import CalibConfig, FitConfig
from headwise.runs import Run

# The demo's requests: a light and a half-sparse model, and one that weighs size 4:1 over quality.
DEMO_REQUESTS = [{"id": "light", "sparsity": 0.3}, {"id": "half", "sparsity": 0.5},
                 {"id": "size-first", "preference": [0.8, 0.2]}]


def open_fit_run(out: str | Path | None, model_name: str, dtype: str, calib: CalibConfig, fit: FitConfig,
                 preset: str | None = None) -> Run:
    from headwise.compress.fit import check_config

    check_config(fit, calib)
    return Run(out, "compress fit", {"model": model_name, "dtype": dtype, "calibration": calib, "fit": fit},
               preset=preset)


def run_fit(model, tokenizer, model_name: str, calib: CalibConfig, fit: FitConfig, run: Run,
            progress: bool = True) -> dict:
    """The `compress fit` recipe: fit the GP surrogate and StratNet within the evaluation budget; the StratNet
    (stratnet.safetensors/json) and results.json go into the run directory."""
    from headwise.compress.fit import fit as do_fit

    summary = do_fit(model, tokenizer, model_name, calib, fit, run, progress=progress)
    summary["run_dir"] = str(run.dir)
    run.finish(summary)
    return summary


def open_prune_run(out: str | Path | None, model_name: str, dtype: str, calib: CalibConfig, sparsity: float,
                   save: bool, preset: str | None = None) -> Run:
    return Run(out, "compress prune", {"model": model_name, "dtype": dtype, "calibration": calib,
                                       "sparsity": sparsity, "save": save}, preset=preset)


def run_prune(model, tokenizer, calib: CalibConfig, sparsity: float, run: Run, save: bool = False) -> dict:
    """The `compress prune` recipe: every decoder block pruned to one `sparsity` (or to the N:M
    `calib.pattern`) by `calib.method`, no StratNet; achieved sparsity, KL and perplexity in results.json, and
    with `save` the pruned model in RUN/model."""
    from headwise.compress.baselines import uniform
    from headwise.compress.fit import calibration
    from headwise.compress.objectives import Evaluator
    from headwise.compress.serve import save_pruned
    from headwise.compress.unstructured import check_pattern

    check_pattern(model, calib.pattern)  # before minutes of calibration
    t0 = time.perf_counter()
    ev = Evaluator.for_config(model, calibration(model, tokenizer, calib, run), "unstructured", calib)
    with ev.applied(uniform(ev.num_blocks, sparsity)) as achieved:
        result = {"sparsity": achieved, **ev.measure_applied()}
        if save:
            save_pruned(model, tokenizer, run.path("model"))
    result.update(seconds=time.perf_counter() - t0, run_dir=str(run.dir))
    run.finish(result)
    return result


def open_serve_run(out: str | Path | None, stratnet: str | Path, requests: str | Path, model_name: str, save: bool,
                   ppl: bool, dtype: str, lm_eval: list[str] | None = None, lm_eval_limit: int = 0) -> Run:
    # lm-eval's tasks are recorded only when asked for, so serve runs made before --lm-eval existed still resume.
    scoring = {"lm_eval": list(lm_eval), "lm_eval_limit": lm_eval_limit} if lm_eval else {}
    return Run(out, "compress serve", {"stratnet": str(stratnet), "requests": str(requests), "model": model_name,
                                       "save": save, "ppl": ppl, "dtype": dtype, **scoring})


def run_serve(model, tokenizer, server, requests: list[dict], run: Run, save: bool = False, ppl: bool = True,
              progress: bool = True, lm_eval: list[str] | None = None, lm_eval_limit: int = 0) -> dict:
    """The `compress serve` recipe: each request -> strategy -> pruned model, measured (sparsity, KL, perplexity,
    and with `lm_eval` lm-eval's scores on those tasks, `lm_eval_limit` documents each, 0: all), one line per
    request in RUN/results.jsonl (resumable), profiles.png; returns the summary with the rows."""
    from headwise.compress.fit import calibration
    from headwise.compress.plots import profiles
    from headwise.compress.serve import serve

    server.check_model(model)
    t0 = time.perf_counter()
    scorer = lm_eval_scorer(tokenizer, lm_eval, lm_eval_limit, run) if lm_eval else None
    calib = calibration(model, tokenizer, server.calib_config, run)
    rows = serve(model, tokenizer, server, requests, calib, run, save=save, ppl=ppl, progress=progress,
                 score=scorer)
    plot = profiles(rows, server.space, run.path("profiles.png"))
    result = {"requests": len(rows), "seconds": time.perf_counter() - t0, "run_dir": str(run.dir),
              "results": str(run.path("results.jsonl")), "plot": str(plot), "rows": rows}
    run.finish({k: v for k, v in result.items() if k != "rows"})
    return result


def lm_eval_scorer(tokenizer, tasks: list[str], limit: int, run: Run):
    """model -> lm-eval's scores on `tasks` ({task: {metric: value}}), headwise's local tasks written into
    RUN/lm-eval-tasks so that their names resolve."""
    from headwise.integrations import lm_eval

    include = run.path("lm-eval-tasks")
    lm_eval.write_tasks(include)
    return lambda model: lm_eval.score(model, tokenizer, tasks, include, limit=limit or None)


def serve_text(result: dict) -> str:
    """The served requests as a table: id, sparsity, KL, perplexity (then lm-eval's scores where asked for)."""
    lines = [f"{'id':10s} {'sparsity':>8s} {'kl':>8s} {'ppl':>8s}"]
    for r in result["rows"]:
        ppl = f"{r['ppl']:8.2f}" if r.get("ppl") is not None else "       -"
        scores = "  ".join(f"{task} {metric.split(',')[0]} {value:.4f}" for task, values in r.get("lm_eval", {}).items()
                           for metric, value in values.items())
        lines.append(f"{r['id']:10s} {r['sparsity']:8.3f} {r['kl']:8.4f} {ppl}" + (f"  {scores}" if scores else ""))
    lines.append(f"{result['requests']} requests in {result['seconds']:.1f} s; results: {result['results']}")
    return "\n".join(lines)


def demo(out: str | Path) -> str:
    """The UniCuCo part of `headwise demo`: the StratNet shipped for SmolLM2 serves three requests."""
    import json

    from headwise.compress.serve import Server
    from headwise.compress.strategy import read_requests
    from headwise.models import load_model
    from headwise.runs import atomic_write

    out = Path(out)
    requests = out / "requests.jsonl"
    atomic_write(requests, "".join(json.dumps(r) + "\n" for r in DEMO_REQUESTS))
    server = Server("smollm2")
    model, tok = load_model(server.meta["model"])
    run = open_serve_run(out / "serve", "smollm2", requests, server.meta["model"], False, True, "auto")
    return serve_text(run_serve(model, tok, server, read_requests(requests), run, progress=False))
