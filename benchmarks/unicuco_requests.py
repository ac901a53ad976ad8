"""UniCuCo vs a per-request search on N compression requests (sparsity spread over 0.2..0.7), on one model, CPU.

    OMP_NUM_THREADS=1 python benchmarks/unicuco_requests.py --model smollm2 \
        [--requests 64] [--search-requests 8] [--heldout-windows 8] [--stratnet DIR] [--work DIR] [--out FILE]

- Without --stratnet the benchmark first fits one with `compress fit`'s defaults (into WORK/fit, resumable),
  so that the fit and the search are timed on the same machine. A resumed run reuses finished searches, which
  may have been timed under another load: each search row records when it ran (`measured_at`).
- UniCuCo's total time = its fit (calibration + every true evaluation + GP/StratNet training, from the fit
  run's evals.json) + N x (StratNet forward, bisection, projection, pruning the model).
- The per-request search (EvoPress-style, baselines.evo_search) runs on `--search-requests` of the N
  requests, evenly spread; its time for N requests is extrapolated linearly from their mean.
- Every KL reported is measured on `--heldout-windows` windows of the calibration text that come after the
  calibration windows: neither the fit nor the search saw them (both optimise KL on the calibration windows,
  and the pruner's statistics come from those too). The one exception is each search's own objective history
  (`search_objective_history`), which is its calibration-window KL, kept to show what it optimised.
- Perplexity is on the test split's windows. UniCuCo, uniform and OWL are measured on every request.
- Goals (issue 15): mean per-request KL ratio UniCuCo / search <= 1.05 on the searched requests; UniCuCo's KL at
  most 2% above uniform's on every request; total time at least 50x below the extrapolated search.
- Finished parts (quality, each searched request) are kept in WORK, so a stopped run resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import time
from pathlib import Path

from tqdm.auto import tqdm

from headwise.compress.baselines import SearchConfig, evo_search, owl, uniform
from headwise.compress.calibration import Calibration, collect, heldout
from headwise.compress.config import CalibConfig, FitConfig
from headwise.compress.fit import CALIB, STATE, fit
from headwise.compress.objectives import Evaluator
from headwise.compress.plots import pareto
from headwise.compress.serve import Server
from headwise.compress.strategy import fingerprint
from headwise.models import load_model
from headwise.runs import Run, atomic_write, environment

GOALS = {"kl_ratio_unicuco_vs_search": 1.05, "unicuco_over_uniform": 1.02, "speedup": 50.0}


def _cached(path: Path, compute):
    if path.is_file():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    value = compute()
    atomic_write(path, json.dumps(value, indent=1) + "\n")
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="model alias or path; the fit is made for it")
    ap.add_argument("--stratnet", help="use this `headwise compress fit` run directory instead of fitting one")
    ap.add_argument("--work", help="where the fit and finished parts go; default runs/unicuco-bench/<model>")
    ap.add_argument("--evals", type=int, default=FitConfig.evals, help="the fit's budget of true evaluations")
    ap.add_argument("--spread", type=float, default=FitConfig.spread, help="the fit's trust region")
    ap.add_argument("--windows", type=int, default=CalibConfig.windows,
                    help="calibration windows of 128 tokens: the pruner's statistics and the KL the fit and search optimise")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--search-requests", type=int, default=8)
    ap.add_argument("--generations", type=int, default=20)
    ap.add_argument("--offspring", type=int, default=4)
    ap.add_argument("--heldout-windows", type=int, default=8, help="windows every reported KL is measured on")
    ap.add_argument("--out", help="default benchmarks/results/unicuco_requests_<model>.json")
    args = ap.parse_args()

    work = Path(args.work or f"runs/unicuco-bench/{args.model}")
    model, tok = load_model(args.model, device="cpu")
    # The measurements kept in WORK belong to one model: refuse to mix two.
    owner = _cached(work / "model.json", lambda: fingerprint(model))
    if owner != fingerprint(model):
        raise SystemExit(f"{work} holds measurements of another model ({owner['model_type']}); give another --work.")
    if args.stratnet:
        fit_dir = Path(args.stratnet)
    else:
        calib_cfg = CalibConfig(windows=args.windows)  # `compress fit`'s defaults otherwise (128-token windows)
        fit_cfg = FitConfig(evals=args.evals, spread=args.spread)
        # One fit per setting; the measurements below are shared, so another setting measures only its own strategies.
        name = "fit" if (args.windows, args.evals, args.spread) == (CalibConfig.windows, FitConfig.evals, FitConfig.spread) else \
            f"fit-w{args.windows}-e{args.evals}-s{args.spread}"
        # Settings objects, so a fit recorded before a setting existed is found by the run's one rule.
        run = Run(work / name, "compress fit", {"model": args.model, "calibration": calib_cfg, "fit": fit_cfg})
        fit(model, tok, args.model, calib_cfg, fit_cfg, run)
        fit_dir = run.dir
    state = json.loads((fit_dir / STATE).read_text())
    server = Server(fit_dir)
    server.check_model(model)
    # A fit run holds its calibration cache; a shipped StratNet does not, and its settings collect it again.
    cache = fit_dir / CALIB
    calib = Calibration.load(cache, server.net.num_blocks) if cache.is_file() else collect(model, tok, server.calib_config)
    held = heldout(model, tok, server.calib_config, args.heldout_windows)
    ev = Evaluator.for_config(model, calib, server.space, server.calib_config, held)

    targets = [round(0.2 + 0.5 * i / (args.requests - 1), 4) for i in range(args.requests)]
    serve_times, strategies = [], {}
    for s in targets:
        t0 = time.perf_counter()
        x, _ = server.strategy({"sparsity": s})
        ev.pruner.apply(x)
        serve_times.append(time.perf_counter() - t0)
        strategies[s] = x
    ev.pruner.restore()
    t0 = time.perf_counter()
    ev.pruner.apply(uniform(ev.num_blocks, 0.5))
    apply_one = time.perf_counter() - t0
    ev.pruner.restore()

    # The calibration as the StratNet recorded it at its fit: the committed measurements stay found by their digest
    # when CalibConfig gains a field (its default is what a record without it means).
    calib_key = json.dumps([server.meta["calibration"], args.heldout_windows])

    def measure(x: list[float]) -> dict:
        """One strategy's held-out KL and perplexity, kept under a digest of the strategy and the settings."""
        digest = hashlib.sha1(json.dumps([x, calib_key]).encode()).hexdigest()[:16]
        return _cached(work / "measure" / f"{digest}.json", lambda: ev.measure(x))

    def quality_at(s: float) -> dict:
        """UniCuCo, uniform and OWL at one request, through the same evaluator."""
        return {"unicuco": measure(strategies[s]), "uniform": measure(uniform(ev.num_blocks, s)),
                "owl": measure(owl(model, calib.norms, s))}

    quality = {s: quality_at(s) for s in tqdm(targets, desc="quality", unit="request")}
    picks = [targets[round(i * (args.requests - 1) / max(args.search_requests - 1, 1))]
             for i in range(args.search_requests)]
    cfg = SearchConfig(generations=args.generations, offspring=args.offspring)
    rows = []
    for s in picks:
        def search(s=s):
            found = evo_search(ev, s, cfg)
            return {"sparsity": s, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "search_seconds": found["seconds"], "search_evaluations": found["evaluations"],
                    "search_strategy": found["strategy"], "search_objective_history": found["history"],
                    "search": measure(found["strategy"])}
        key = hashlib.sha1(json.dumps([calib_key, vars(cfg)]).encode())
        row = _cached(work / "search" / f"{s}-{key.hexdigest()[:12]}.json", search)
        row |= quality[s]
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("sparsity", "search_seconds")} |
                         {n: round(row[n]["kl"], 4) for n in ("unicuco", "search", "uniform", "owl")}), flush=True)

    fit_seconds = state["seconds"]
    n = args.requests
    t_unicuco = fit_seconds + sum(serve_times)
    names = ("unicuco", "search", "uniform", "owl")
    t_search = n * statistics.mean(r["search_seconds"] for r in rows) if rows else None
    mean = {name: {k: statistics.mean(r[name][k] for r in rows) for k in ("kl", "ppl")} for name in names} if rows else {}
    mean_all = {name: {k: statistics.mean(q[name][k] for q in quality.values()) for k in ("kl", "ppl")}
                for name in ("unicuco", "uniform", "owl")}
    ratios = [r["unicuco"]["kl"] / r["search"]["kl"] for r in rows]
    over_uniform = [q["unicuco"]["kl"] / q["uniform"]["kl"] for q in quality.values()]

    def jitter(name: str) -> float:
        """How rough the held-out KL is from one request to the next: the standard deviation of log KL minus the
        mean of its two neighbours (the noise floor any per-request comparison sits on)."""
        y = [math.log(q[name]["kl"]) for _, q in sorted(quality.items())]
        return statistics.pstdev(y[i] - (y[i - 1] + y[i + 1]) / 2 for i in range(1, len(y) - 1)) if len(y) > 2 else 0.0

    result = {
        "model": args.model, "requests": n, "search_requests": len(rows), "heldout_windows": args.heldout_windows,
        "fit_seconds": fit_seconds, "fit_true_evaluations": len(state["x"]), "serve_seconds_total": sum(serve_times),
        "unicuco_total_seconds": t_unicuco, "search_total_seconds_extrapolated": t_search,
        "speedup": t_search / t_unicuco if rows else None, "apply_one_strategy_seconds": apply_one,
        # The mean of per-request ratios: each request counts once, whatever its KL's size.
        "kl_ratio_unicuco_vs_search": statistics.mean(ratios) if rows else None,
        "kl_ratio_unicuco_vs_search_geomean": math.exp(statistics.mean(map(math.log, ratios))) if rows else None,
        "kl_ratio_of_means_unicuco_vs_search": mean["unicuco"]["kl"] / mean["search"]["kl"] if rows else None,
        "unicuco_over_uniform_max": max(over_uniform),
        "requests_over_uniform_by_2pct": sum(r > GOALS["unicuco_over_uniform"] for r in over_uniform),
        "requests_below_uniform": sum(r < 1 for r in over_uniform),
        "log_kl_jitter": {name: jitter(name) for name in ("unicuco", "uniform")},
        "goals": GOALS, "mean": mean, "quality_requests": len(quality), "mean_all_requests": mean_all,
        "quality": [{"sparsity": s, **q, "unicuco_strategy": strategies[s]} for s, q in quality.items()], "search_config": vars(cfg), "rows": rows,
        "stratnet": str(fit_dir), "env": environment(),
    }
    out = Path(args.out or f"benchmarks/results/unicuco_requests_{args.model}.json")
    atomic_write(out, json.dumps(result, indent=2) + "\n")
    points = {name: [(q[name]["sparsity"], q[name]["kl"]) for q in quality.values()] for name in mean_all}
    pareto(points | ({"search": [(r["search"]["sparsity"], r["search"]["kl"]) for r in rows]} if rows else {}),
           out.with_suffix(".png"))
    if rows:
        print(f"{n} requests: UniCuCo {t_unicuco:.0f} s (fit {fit_seconds:.0f} s) vs per-request search "
              f"{t_search:.0f} s (mean of {len(rows)}, x{n}): {result['speedup']:.1f}x (goal >= 50)")
        print(f"held-out KL, UniCuCo / search per request: mean {result['kl_ratio_unicuco_vs_search']:.3f} "
              f"(goal <= 1.05), geometric mean {result['kl_ratio_unicuco_vs_search_geomean']:.3f}")
        for name, v in mean.items():
            print(f"  {name:8s} KL {v['kl']:.4f}  ppl {v['ppl']:.2f}")
    print(f"apply one strategy: {apply_one:.2f} s")
    print(f"UniCuCo / uniform held-out KL: worst {result['unicuco_over_uniform_max']:.3f} (goal <= 1.02), above "
          f"+2% on {result['requests_over_uniform_by_2pct']} and below uniform on {result['requests_below_uniform']} "
          f"of {len(quality)} requests")


if __name__ == "__main__":
    main()
