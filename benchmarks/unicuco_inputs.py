"""Which inputs should UniCuCo's pruner take its statistics from: the dense model's, once ("dense", the default), or
the pruned blocks' outputs, per strategy ("sequential", locuslab/wanda's order, the faithful preset)?

    python benchmarks/unicuco_inputs.py [--model smollm2] [--method wanda] [--out benchmarks/results/unicuco_inputs_smollm2.json]

With `compress fit`'s calibration (CalibConfig defaults: 4 wiki-en windows of 128 tokens) and held-out windows
after them, each strategy (uniform 0.3, 0.5, 0.7, and two non-uniform ones of mean 0.5) is applied both ways
through `Evaluator` and measured: KL from the dense model on 8 held-out windows, test perplexity, and the time
to apply it (one-shot: a comparison against cached ranks; sequential: a new pass per strategy).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from headwise.compress.calibration import collect, heldout
from headwise.compress.config import CalibConfig
from headwise.compress.objectives import Evaluator
from headwise.heads.layout import layout
from headwise.models import load_model
from headwise.runs import atomic_write, environment


def strategies(d: int) -> dict[str, list[float]]:
    ramp = [0.3 + 0.4 * i / (d - 1) for i in range(d)]  # mean 0.5, deeper blocks pruned more
    return {"uniform 0.3": [0.3] * d, "uniform 0.5": [0.5] * d, "uniform 0.7": [0.7] * d,
            "ramp 0.3-0.7": ramp, "ramp 0.7-0.3": ramp[::-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--method", default="wanda", choices=["wanda", "sparsegpt"])
    ap.add_argument("--heldout", type=int, default=8, help="held-out windows the KL is measured on")
    ap.add_argument("--out", default="benchmarks/results/unicuco_inputs_smollm2.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, tok = load_model(args.model, device="cpu")
    config = CalibConfig(method=args.method)
    calib = collect(model, tok, config)
    held = heldout(model, tok, config, args.heldout)
    evaluators = {inputs: Evaluator(model, calib, "unstructured", config.batch_size, config.method, held,
                                    config.rounding, inputs) for inputs in ("dense", "sequential")}
    rows = []
    for name, x in strategies(layout(model).num_layers).items():
        for inputs, ev in evaluators.items():
            t0 = time.perf_counter()
            with ev.applied(x) as sparsity:
                applied = time.perf_counter() - t0
                m = ev.measure_applied()
            rows.append({"strategy": name, "inputs": inputs, "sparsity": sparsity, "kl": m["kl"], "ppl": m["ppl"],
                         "apply_seconds": applied})
            print(f"{name:14s} {inputs:10s} kl {m['kl']:.4f} ppl {m['ppl']:8.3f} apply {applied:6.2f} s", flush=True)
    result = {"command": "python benchmarks/unicuco_inputs.py " + " ".join(
        f"--{k} {v}" for k, v in vars(args).items()), "calibration": config.to_dict(), "rows": rows,
        "environment": environment()}
    atomic_write(Path(args.out), json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
