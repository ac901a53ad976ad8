"""Forward and generate time on SmolLM2 with head hooks installed vs none, as ratios from one run.

    python benchmarks/hook_overhead.py [--repeats 7] [--out benchmarks/results/hook_overhead.json]

Three settings are timed in interleaved rounds (so drift hits all alike) and compared by the median:
- none: the plain model;
- identity: a forward pre-hook that returns its input on every layer's out-projection (pure hook cost);
- scale: `scale_heads` with a non-trivial factor on every head of every layer (the hook doing real work).
Goal: identity / none <= 1.03.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch

from headwise.heads import layout, scale_heads
from headwise.heads.hooks import out_proj_pre_hooks
from headwise.models import load_model
from headwise.runs import atomic_write, environment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--tokens", type=int, default=256, help="prompt length of the forward pass")
    ap.add_argument("--new-tokens", type=int, default=32, help="tokens generated per generate() call")
    ap.add_argument("--out", default="benchmarks/results/hook_overhead.json")
    args = ap.parse_args()

    model, _ = load_model(args.model)
    lay = layout(model)
    ids = torch.randint(100, 40000, (1, args.tokens), generator=torch.Generator().manual_seed(0)).to(model.device)
    prompt = ids[:, :16]
    factors = torch.full(lay.shape, 1.01)
    settings = {
        "none": contextlib.nullcontext,
        "identity": lambda: out_proj_pre_hooks(lay, {layer: (lambda m, a: None) for layer in range(lay.num_layers)}),
        "scale": lambda: scale_heads(model, factors),
    }
    jobs = {
        "forward": lambda: model(input_ids=ids, use_cache=False),
        "generate": lambda: model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                           max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                           do_sample=False),
    }
    times = {job: {s: [] for s in settings} for job in jobs}
    with torch.no_grad():
        for job in jobs.values():  # warm-up
            job()
        for _ in range(args.repeats):
            for job_name, job in jobs.items():
                for name, ctx in settings.items():
                    with ctx():
                        t = time.perf_counter()
                        job()
                        times[job_name][name].append(time.perf_counter() - t)
    result = {"model": args.model, "tokens": args.tokens, "new_tokens": args.new_tokens, "repeats": args.repeats,
              "env": environment(), "median_seconds": {}, "ratio_vs_none": {}}
    for job_name, per in times.items():
        med = {name: statistics.median(v) for name, v in per.items()}
        result["median_seconds"][job_name] = med
        result["ratio_vs_none"][job_name] = {name: med[name] / med["none"] for name in settings if name != "none"}
    atomic_write(Path(args.out), json.dumps(result, indent=2) + "\n")
    for job_name, ratios in result["ratio_vs_none"].items():
        base = result["median_seconds"][job_name]["none"]
        print(f"{job_name:8s} none {base:.3f}s  " + "  ".join(f"{k} x{v:.3f}" for k, v in ratios.items()))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
