"""The UniCuCo training loop: initial design, then rounds of (fit GP, train StratNet through it, evaluate
StratNet's proposals truly) within an evaluation budget. Every true evaluation is checkpointed, so an
interrupted fit resumes where it stopped."""

from __future__ import annotations

import math
import time
from dataclasses import asdict

import torch
from tqdm.auto import tqdm

from headwise.compress import stratnet as sn
from headwise.compress.calibration import Calibration, collect
from headwise.compress.config import CalibConfig, FitConfig
from headwise.compress.depth import drop_top
from headwise.compress.gp import GPSurrogate
from headwise.compress.objectives import Evaluator
from headwise.compress.strategy import fingerprint, preference_for_sparsity, project
from headwise.errors import HeadwiseError
from headwise.heads.layout import layout

CALIB = "calibration.safetensors"
STATE = "evals.json"


def check_config(fit: FitConfig, calib: CalibConfig) -> None:
    """What the two configs (each checked on its own) cannot be together."""
    if fit.space == "depth" and calib.method != "wanda":
        raise HeadwiseError(f"method {calib.method!r} prunes weights; the depth space removes whole blocks instead.")
    if calib.pattern != "unstructured":
        raise HeadwiseError(f"the {calib.pattern} pattern fixes every pruned block's sparsity, which leaves no "
                            "per-block ratios to fit; prune with it uniformly (`headwise compress prune`).")


def calibration(model, tokenizer, config: CalibConfig, run=None) -> Calibration:
    """Collected once per run directory and reused by every later step, resume included."""
    path = run.path(CALIB) if run is not None else None
    if path is not None and path.is_file():
        return Calibration.load(path, layout(model).num_layers)
    calib = collect(model, tokenizer, config)
    if path is not None:
        calib.save(path)
    return calib


def initial_design(fit: FitConfig, d: int) -> list[list[float]]:
    """Strategies whose mean sparsities are spread evenly over [min_sparsity, max_sparsity], with random
    per-block variation (unstructured) or random block subsets (depth)."""
    g = torch.Generator().manual_seed(fit.seed)
    targets = torch.linspace(fit.min_sparsity, fit.max_sparsity, fit.initial, dtype=torch.float64)
    out = []
    for i, s in enumerate(targets.tolist()):
        noise = torch.rand(d, generator=g, dtype=torch.float64)
        if fit.space == "depth":
            out.append([float(v) for v in drop_top(noise, max(1, min(d - 1, round(s * d))))])
        else:
            # Every other point is uniform so the GP sees the baseline's line as well as varied profiles.
            spread = 0.0 if i % 2 == 0 else fit.spread
            out.append(project(torch.full((d,), s, dtype=torch.float64) + spread * (2 * noise - 1), "unstructured",
                               target=s, upper=fit.max_ratio))
    return out


def _fit_models(x, kl, fit: FitConfig, d: int, round_idx: int, warm: dict | None, beta: float):
    y = [math.log(max(v, 1e-8)) for v in kl]
    gp = GPSurrogate(fit.kernel, fit.gp_iters).fit(x, y)
    torch.manual_seed(fit.seed + 1000 * round_idx)
    unstructured = fit.space == "unstructured"
    net = sn.StratNet(d, fit.hidden, fit.max_ratio if unstructured else 1.0, fit.spread if unstructured else 0.0)
    if warm is not None:
        net.load_state_dict(warm)
    norm = sn.Normaliser(net.max_ratio, min(y), max(y))
    gen = torch.Generator().manual_seed(fit.seed + 7 * round_idx + 1)
    losses = sn.train(net, gp, norm, fit.steps, fit.prefs_per_step, beta, fit.lr, gen)
    return gp, net, losses


def _proposals(net, fit: FitConfig, round_idx: int, seen: list[list[float]]) -> list[list[float]]:
    """StratNet's strategies at target sparsities spread evenly over [min_sparsity, max_sparsity] (offset every
    round), each shifted to its target; every other one explores: random per-block offsets of up to +-spread
    are added to StratNet's own before the shift, so a proposal may leave the served trust region by up to
    spread, which is how the GP learns what lies just beyond it. Near-duplicates of earlier evaluations are
    dropped.

    Aiming at sparsities rather than at evenly spaced preferences keeps the evaluations inside the range that
    requests use (StratNet's sparsity is far from linear in the preference). Depth proposals are StratNet's
    outputs at evenly spaced preferences, as before: a removed block cannot be shifted."""
    offset = (round_idx * 0.618034) % 1.0
    gen = torch.Generator().manual_seed(fit.seed + 9973 * (round_idx + 1))
    out = []
    for i in range(4 * fit.batch):
        if len(out) >= fit.batch:
            break
        frac = ((i % fit.batch) + offset) / fit.batch % 1.0
        with torch.no_grad():
            if fit.space == "depth":
                lam = min(frac + 0.013 * (i // fit.batch), 1.0)
                cand = project(net(torch.tensor([[lam, 1 - lam]], dtype=torch.float64))[0], "depth")
            else:
                target = fit.min_sparsity + (fit.max_sparsity - fit.min_sparsity) * frac
                x = net(torch.tensor([preference_for_sparsity(net, target)], dtype=torch.float64))[0]
                if i % 2 == 1 or i >= fit.batch:
                    noise = fit.spread * (2 * torch.rand(len(x), generator=gen, dtype=torch.float64) - 1)
                    x = x + noise - noise.mean()
                cand = project(x.clamp(0.0, fit.max_ratio), "unstructured", target=target, upper=fit.max_ratio)
        if all(max(abs(a - b) for a, b in zip(cand, s)) > 0.01 for s in seen + out):
            out.append(cand)
    return out


def fit(model, tokenizer, model_name: str, calib_cfg: CalibConfig, fit_cfg: FitConfig, run,
        progress: bool = True) -> dict:
    """Train a StratNet for `model`; writes stratnet.safetensors/json and evals.json into `run`'s directory."""
    check_config(fit_cfg, calib_cfg)
    t_start = time.perf_counter()
    state = run.read_json(STATE) or {"x": [], "kl": [], "round": 0, "pending": None, "seconds": 0.0,
                                    "calibration_seconds": None}
    t0 = time.perf_counter()
    calib = calibration(model, tokenizer, calib_cfg, run)
    if state["calibration_seconds"] is None:
        state["calibration_seconds"] = time.perf_counter() - t0
    ev = Evaluator.for_config(model, calib, fit_cfg.space, calib_cfg)
    d = ev.num_blocks
    bar = tqdm(total=fit_cfg.evals, initial=len(state["x"]), desc="true evaluations", disable=not progress)

    def checkpoint():
        state["seconds"] = state_seconds + (time.perf_counter() - t_start)
        run.write_json(STATE, state)

    state_seconds = state["seconds"]
    if state["pending"] is None and not state["x"]:
        state["pending"] = initial_design(fit_cfg, d)
    if state.get("done"):
        bar.close()
        return state["summary"]
    warm = None
    if run.path(sn.WEIGHTS).is_file():
        warm = sn.load(run.dir)[0].state_dict()
    while True:
        for cand in list(state["pending"] or []):
            if len(state["x"]) >= fit_cfg.evals:
                break
            state["kl"].append(ev.kl(cand))
            state["x"].append(cand)
            state["pending"].remove(cand)
            checkpoint()
            bar.update(1)
        state["pending"] = None
        round_idx = state["round"]
        final = len(state["x"]) >= fit_cfg.evals
        gp, net, losses = _fit_models(state["x"], state["kl"], fit_cfg, d, round_idx, warm,
                                      fit_cfg.serve_beta if final else fit_cfg.beta)
        warm = net.state_dict()
        meta = {"model": model_name, "fingerprint": fingerprint(model), "space": fit_cfg.space,
                "calibration": asdict(calib_cfg), "fit": asdict(fit_cfg), "evaluations": len(state["x"]),
                "round": round_idx, "preference": ["size", "quality"]}
        sn.save(net, run.dir, meta)
        state["round"] = round_idx + 1
        if final:
            checkpoint()
            break
        state["pending"] = _proposals(net, fit_cfg, round_idx, state["x"])
        if not state["pending"]:  # StratNet repeats itself: nothing new to learn from within this budget
            checkpoint()
            break
        checkpoint()
    bar.close()
    scales = sorted(gp.lengthscales())
    state["summary"] = {"evaluations": len(state["x"]), "rounds": state["round"], "fit_seconds": state["seconds"],
                        "calibration_seconds": state["calibration_seconds"],
                        "final_loss": losses[-1] if losses else None,
                        "gp_lengthscale_median": scales[len(scales) // 2], "stratnet": str(run.dir / sn.WEIGHTS)}
    state["done"] = True
    run.write_json(STATE, state)
    return state["summary"]
