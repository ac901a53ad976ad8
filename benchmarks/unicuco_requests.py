"""UniCuCo vs a per-request search on N compression requests (sparsity spread over 0.2..0.7), on SmolLM2, CPU.

    python benchmarks/unicuco_requests.py --stratnet runs/compress-fit/smollm2-shipped \
        [--requests 64] [--search-requests 8] [--generations 20] [--offspring 4] [--out ...]

- UniCuCo's total time = its fit (calibration + every true evaluation + GP/StratNet training, read from the fit
  run's evals.json) + N x (StratNet forward, bisection, projection, pruning the model).
- The per-request search (EvoPress-style, baselines.evo_search) runs on `--search-requests` of the N
  requests, evenly spread; its time for N requests is extrapolated linearly from their mean.
- Quality, all through the same evaluator: mean KL (calibration tokens) and perplexity (test windows) of
  UniCuCo, uniform and OWL on every request (`--quality-requests`), and of all four on the searched ones.
- Also prints the time to apply one strategy (goal: under 2 s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from tqdm.auto import tqdm

from headwise.compress.baselines import SearchConfig, evo_search, owl, uniform
from headwise.compress.calibration import Calibration
from headwise.compress.fit import CALIB, STATE
from headwise.compress.objectives import Evaluator
from headwise.compress.plots import pareto
from headwise.compress.serve import Server
from headwise.models import load_model
from headwise.runs import atomic_write, environment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stratnet", required=True, help="a `headwise compress fit` run directory")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--search-requests", type=int, default=8)
    ap.add_argument("--generations", type=int, default=20)
    ap.add_argument("--offspring", type=int, default=4)
    ap.add_argument("--quality-requests", type=int, default=64,
                    help="Requests (evenly spread) on which UniCuCo, uniform and OWL are all measured.")
    ap.add_argument("--out", default="benchmarks/results/unicuco_requests.json")
    args = ap.parse_args()

    fit_dir = Path(args.stratnet)
    state = json.loads((fit_dir / STATE).read_text())
    server = Server(fit_dir)
    model, _ = load_model(server.meta["model"], device="cpu")
    server.check_model(model)
    calib = Calibration.load(fit_dir / CALIB, server.net.num_blocks)
    ev = Evaluator(model, calib, server.space, server.calib_config.batch_size, server.calib_config.method)

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

    def cheap(s: float) -> dict:
        """UniCuCo, uniform and OWL at one request, through the same evaluator."""
        return {name: ev.measure(x) for name, x in (("unicuco", strategies[s]), ("uniform", uniform(ev.num_blocks, s)),
                                                    ("owl", owl(model, calib.norms, s)))}

    # Quality of the cheap methods on every request; the search only on the requests it ran for.
    quality = {s: cheap(s) for s in tqdm(targets[::max(1, args.requests // args.quality_requests)], desc="quality",
                                         unit="request")}
    picks = [targets[round(i * (args.requests - 1) / max(args.search_requests - 1, 1))]
             for i in range(args.search_requests)]
    cfg = SearchConfig(generations=args.generations, offspring=args.offspring)
    rows = []
    for s in picks:
        found = evo_search(ev, s, cfg)
        row = {"sparsity": s, "search_seconds": found["seconds"], "search_evaluations": found["evaluations"],
               "search": ev.measure(found["strategy"])}
        row |= quality.get(s) or cheap(s)
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("sparsity", "search_seconds")} |
                         {n: round(row[n]["kl"], 4) for n in ("unicuco", "search", "uniform", "owl")}), flush=True)

    fit_seconds = state["seconds"]
    n = args.requests
    t_unicuco = fit_seconds + sum(serve_times)
    names = ("unicuco", "search", "uniform", "owl")
    # --search-requests 0 compares StratNets on quality alone (no speed-up).
    t_search = n * statistics.mean(r["search_seconds"] for r in rows) if rows else None
    mean = {name: {k: statistics.mean(r[name][k] for r in rows) for k in ("kl", "ppl")} for name in names} if rows else {}
    mean_all = {name: {k: statistics.mean(q[name][k] for q in quality.values()) for k in ("kl", "ppl")}
                for name in ("unicuco", "uniform", "owl")}
    result = {
        "requests": n, "search_requests": len(rows), "fit_seconds": fit_seconds,
        "fit_true_evaluations": len(state["x"]), "serve_seconds_total": sum(serve_times),
        "unicuco_total_seconds": t_unicuco, "search_total_seconds_extrapolated": t_search,
        "speedup": t_search / t_unicuco if rows else None, "apply_one_strategy_seconds": apply_one,
        "kl_ratio_unicuco_vs_search": mean["unicuco"]["kl"] / mean["search"]["kl"] if rows else None,
        "mean": mean, "quality_requests": len(quality), "mean_all_requests": mean_all,
        "quality": [{"sparsity": s, **q} for s, q in quality.items()], "search_config": vars(cfg), "rows": rows,
        "stratnet": str(fit_dir), "env": environment(),
    }
    out = Path(args.out)
    atomic_write(out, json.dumps(result, indent=2) + "\n")
    points = {name: [(q[name]["sparsity"], q[name]["kl"]) for q in quality.values()] for name in mean_all}
    pareto(points | ({"search": [(r["search"]["sparsity"], r["search"]["kl"]) for r in rows]} if rows else {}),
           out.with_suffix(".png"))
    if rows:
        print(f"{n} requests: UniCuCo {t_unicuco:.0f} s (fit {fit_seconds:.0f} s) vs per-request search "
              f"{t_search:.0f} s (mean of {len(rows)}, x{n}): {result['speedup']:.1f}x")
        print(f"mean over the {len(rows)} searched requests:")
        for name, v in mean.items():
            print(f"  {name:8s} KL {v['kl']:.4f}  ppl {v['ppl']:.2f}")
    print(f"apply one strategy: {apply_one:.2f} s")
    print(f"mean over {len(quality)} requests:")
    for name, v in mean_all.items():
        print(f"  {name:8s} KL {v['kl']:.4f}  ppl {v['ppl']:.2f}")
    wins = sum(q["unicuco"]["kl"] < q["uniform"]["kl"] for q in quality.values())
    print(f"UniCuCo's KL below uniform's on {wins} of {len(quality)} requests")


if __name__ == "__main__":
    main()
