"""How well the fit's GP surrogate predicts the KL of the strategies UniCuCo serves, against the measured KL.

    python benchmarks/unicuco_gp_check.py --stratnet runs/compress-fit/smollm2-shipped2 \
        [--results benchmarks/results/unicuco_requests_smollm2.json]

Refits the GP exactly as the fit's last round did (same evaluations, kernel and iterations), asks the StratNet
for each request's strategy, and compares the GP's predicted KL with what `unicuco_requests.py` measured for
UniCuCo and for uniform sparsity at the same requests. No model is loaded: it takes seconds. The GP models KL on
the calibration windows and reports since issue 15 hold KL on held-out windows (on SmolLM2 about 1.5 times the
calibration KL), so read the shape of the two curves, not their gap.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from headwise.compress.baselines import uniform
from headwise.compress.fit import STATE
from headwise.compress.gp import GPSurrogate
from headwise.compress.serve import Server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stratnet", required=True, help="the `headwise compress fit` run the benchmark used")
    ap.add_argument("--results", default="benchmarks/results/unicuco_requests_smollm2.json")
    ap.add_argument("--every", type=int, default=8, help="print every N-th request")
    args = ap.parse_args()

    fit_dir = Path(args.stratnet)
    state = json.loads((fit_dir / STATE).read_text())
    server = Server(fit_dir)
    fit = server.meta["fit"]
    gp = GPSurrogate(fit["kernel"], fit["gp_iters"]).fit(state["x"], [math.log(max(v, 1e-8)) for v in state["kl"]])
    rows = json.loads(Path(args.results).read_text())["quality"]
    d = server.net.num_blocks
    for name, strategy in (("unicuco", lambda s: server.strategy({"sparsity": s})[0]),
                           ("uniform", lambda s: uniform(d, s))):
        x = torch.tensor([strategy(r["sparsity"]) for r in rows], dtype=torch.float64)
        mean, std = gp.posterior(x)
        true = torch.tensor([math.log(r[name]["kl"]) for r in rows], dtype=torch.float64)
        rmse = ((mean - true) ** 2).mean().sqrt().item()
        print(f"{name}: RMSE of the GP's log KL over {len(rows)} requests {rmse:.3f}; "
              f"largest deviation of a block from the strategy's mean {(x - x.mean(1, keepdim=True)).abs().max():.3f}")
        for i in range(0, len(rows), args.every):
            print(f"  sparsity {rows[i]['sparsity']:.3f}: GP KL {math.exp(mean[i]):.4f} "
                  f"(log std {std[i]:.2f}), measured {math.exp(true[i]):.4f}")


if __name__ == "__main__":
    main()
