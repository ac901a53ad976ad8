"""Which GP structure sees the shape of a strategy? Fits each candidate on a fit-sized set of true evaluations
and scores its predictions on the rest.

    OMP_NUM_THREADS=1 python benchmarks/unicuco_gp_structure.py --model smollm2 [--strategies 120] [--train 48]

Strategies (seeded): every fourth one uniform, the others at a random level with random per-block offsets of
+-0.05 or +-0.1, or a smooth random cubic profile over depth of +-0.05, projected to their level. Each gets its
KL on 2 calibration windows of 128 tokens (what a fit saw before `compress fit` moved to 4; the committed data
were measured then) and on 8 held-out windows; they are kept in
`--data` so that the comparison reruns without the model.

Scored on the strategies after the first `--train`: RMSE of log KL, and the correlation of the predicted and
true *shape effect* (log KL minus a cubic in the level fitted on all uniform strategies), per kind of
offsets. Candidates: `plain` (constant mean, one ARD Matern-5/2 over x: the GP before issue 15), `additive`
(the level curve as prior mean, Matern on the level + ARD Matern on the shape) and `structured` (the library's
GPSurrogate: the level kernel plus a level-scaled ARD shape kernel).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import gpytorch
import torch

from headwise.compress.gp import GPSurrogate, _LevelMean, _powers, level_and_shape
from headwise.runs import atomic_write

KINDS = {0: "uniform", 1: "random +-0.05", 2: "random +-0.1", 3: "smooth +-0.05"}


def strategies(d: int, n: int, seed: int = 1) -> list[tuple[int, list[float]]]:
    from headwise.compress.strategy import project

    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        s = 0.15 + 0.6 * torch.rand(1, generator=g).item()
        kind = i % 4
        if kind == 0:
            out.append((kind, [s] * d))
            continue
        if kind == 3:
            t = torch.linspace(-1, 1, d, dtype=torch.float64)
            c = 2 * torch.rand(3, generator=g, dtype=torch.float64) - 1
            p = c[0] * t + c[1] * (1.5 * t ** 2 - 0.5) + c[2] * (2.5 * t ** 3 - 1.5 * t)
            dev = 0.05 * p / p.abs().max()
        else:
            dev = (0.05 if kind == 1 else 0.1) * (2 * torch.rand(d, generator=g, dtype=torch.float64) - 1)
        out.append((kind, project(torch.full((d,), s, dtype=torch.float64) + dev, "unstructured", target=s)))
    return out


def gather(model_name: str, n: int) -> list[dict]:
    from tqdm.auto import tqdm

    from headwise.compress.calibration import collect, heldout
    from headwise.compress.config import CalibConfig
    from headwise.compress.objectives import Evaluator, mean_kl
    from headwise.models import load_model

    model, tok = load_model(model_name, device="cpu")
    cfg = CalibConfig(seq_len=128, windows=2)
    calib = collect(model, tok, cfg)
    ids, logp = heldout(model, tok, cfg, 8)
    ev = Evaluator(model, calib)
    rows = []
    for kind, x in tqdm(strategies(ev.num_blocks, n), desc="strategies"):
        with ev.applied(x):
            rows.append({"kind": kind, "x": x, "kl_cal": mean_kl(model, calib.ids, calib.dense_logp),
                         "kl_held": mean_kl(model, ids, logp)})
    return rows


class _Candidate(gpytorch.models.ExactGP):
    def __init__(self, x, y, likelihood, which: str, coef):
        super().__init__(x, y, likelihood)
        d = x.shape[-1]
        self.which = which
        if which == "plain":
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=d))
            self.covar_module.base_kernel.lengthscale = torch.ones(1, d, dtype=torch.float64)
        else:
            prior = gpytorch.priors.GammaPrior
            self.mean_module = _LevelMean(coef)
            self.covar_module = (
                gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=2.5, active_dims=[0],
                                                                           lengthscale_prior=prior(3.0, 6.0)),
                                             outputscale_prior=prior(2.0, 4.0))
                + gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(
                    nu=2.5, ard_num_dims=d, active_dims=list(range(1, d + 1)), lengthscale_prior=prior(3.0, 6.0)),
                    outputscale_prior=prior(2.0, 4.0)))

    def forward(self, x):
        z = x if self.which == "plain" else level_and_shape(x)
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(z))


def candidate(which: str, x, y):
    """Fit `plain` (Adam, 150 steps, as before issue 15) or `additive` (L-BFGS); returns a predictor."""
    if which == "structured":
        gp = GPSurrogate().fit(x, y)
        return lambda xt: gp.posterior(xt)[0].detach()
    ym, ys = y.mean(), y.std()
    yn = (y - ym) / ys
    a = _powers(x.mean(-1))
    coef = torch.linalg.solve(a.T @ a + 1e-6 * torch.eye(a.shape[1], dtype=torch.float64), a.T @ yn)
    lik = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=gpytorch.constraints.GreaterThan(1e-6)).double()
    model = _Candidate(x, yn, lik, which, coef).double()
    lik.noise = 1e-3
    model.train()
    lik.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)

    def loss():
        return -mll(model(x), yn)

    if which == "plain":
        opt = torch.optim.Adam(model.parameters(), lr=0.1)
        for _ in range(150):
            opt.zero_grad()
            loss().backward()
            opt.step()
    else:
        opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            value = loss()
            value.backward()
            return value

        opt.step(closure)
    model.eval()
    lik.eval()

    def predict(xt):
        with torch.no_grad(), gpytorch.settings.fast_pred_var(False):
            return model(xt).mean * ys + ym
    return predict


def compare(rows: list[dict], train: int, key: str = "kl_cal") -> dict:
    x = torch.tensor([r["x"] for r in rows], dtype=torch.float64)
    y = torch.tensor([math.log(r[key]) for r in rows], dtype=torch.float64)
    kind = torch.tensor([r["kind"] for r in rows])
    m = x.mean(-1)
    uni = kind == 0
    a = torch.stack([m[uni] ** k for k in range(4)], -1)
    c = torch.linalg.lstsq(a, y[uni].unsqueeze(-1)).solution.squeeze(-1)
    effect = y - sum(c[k] * m ** k for k in range(4))
    te = torch.arange(len(rows)) >= train
    out = {}
    for which in ("plain", "additive", "structured"):
        mu = candidate(which, x[~te], y[~te])(x[te])
        pred_effect = mu - (y[te] - effect[te])
        res = {"rmse_log_kl": (mu - y[te]).pow(2).mean().sqrt().item()}
        for k in (1, 2, 3):
            sel = kind[te] == k
            res[f"shape_effect_corr[{KINDS[k]}]"] = torch.corrcoef(
                torch.stack([pred_effect[sel], effect[te][sel]]))[0, 1].item()
        nu = kind[te] != 0
        res["shape_effect_corr[all non-uniform]"] = torch.corrcoef(
            torch.stack([pred_effect[nu], effect[te][nu]]))[0, 1].item()
        out[which] = res
    out["shape_effect_sd"] = effect[te][kind[te] != 0].std().item()
    nu = kind != 0  # over every non-uniform strategy: how much of the shape effect block 0 alone explains
    out["block0_deviation_corr"] = torch.corrcoef(torch.stack([effect[nu], (x[:, 0] - m)[nu]]))[0, 1].item()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--strategies", type=int, default=120)
    ap.add_argument("--train", type=int, default=48, help="the first N strategies train, the rest test")
    ap.add_argument("--data", help="default benchmarks/results/unicuco_gp_structure_<model>_data.json")
    ap.add_argument("--out", help="default benchmarks/results/unicuco_gp_structure_<model>.json")
    args = ap.parse_args()
    data = Path(args.data or f"benchmarks/results/unicuco_gp_structure_{args.model}_data.json")
    if data.is_file():
        rows = json.loads(data.read_text())
    else:
        rows = gather(args.model, args.strategies)
        atomic_write(data, json.dumps(rows) + "\n")
    result = {"model": args.model, "strategies": len(rows), "train": args.train,
              "calibration_kl": compare(rows, args.train), "heldout_kl": compare(rows, args.train, "kl_held")}
    atomic_write(Path(args.out or f"benchmarks/results/unicuco_gp_structure_{args.model}.json"),
                 json.dumps(result, indent=2) + "\n")
    for target in ("calibration_kl", "heldout_kl"):
        print(f"{target} (shape-effect sd {result[target]['shape_effect_sd']:.3f}, correlation with block 0's "
              f"deviation {result[target]['block0_deviation_corr']:+.2f}):")
        for which in ("plain", "additive", "structured"):
            print(f"  {which:10s} " + "  ".join(f"{k} {v:+.3f}" for k, v in result[target][which].items()))


if __name__ == "__main__":
    main()
