"""Seconds per sample of greedy, VHR, VCD and PAI on the same model, images and length, as ratios to greedy.

    python benchmarks/vhr_overhead.py --model emoji-llava [--images DIR] [--n 8] [--new-tokens 128]
    python benchmarks/vhr_overhead.py --model tiny:llava      # a tiny random LLaVA (plumbing only)

Every method generates exactly --new-tokens tokens (min_new_tokens = max_new_tokens), so the ratios
compare equal work. Methods run in interleaved rounds over the images. Goal: vhr / greedy <= 1.05 at
128 new tokens; vcd is expected near 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from headwise.runs import atomic_write, environment
from headwise.vhr import METHODS, generate


def load(model: str):
    if model.startswith("tiny:"):
        from headwise.testing_vlm import tiny_vlm

        return tiny_vlm(model.split(":", 1)[1])
    from headwise.models import load_model

    return load_model(model)


def images(folder: str | None, n: int):
    from PIL import Image

    if folder:
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:n]
        return [Image.open(p).convert("RGB") for p in files]
    from headwise.testing_vlm import test_image

    return [test_image(i, size=(64, 64)) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny:llava")
    ap.add_argument("--images", default=None, help="folder of images (default: synthetic test images)")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt", default="Please describe this image in detail.")
    ap.add_argument("--out", default="benchmarks/results/vhr_overhead.json")
    args = ap.parse_args()

    model, processor = load(args.model)
    imgs = images(args.images, args.n)
    kwargs = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens}
    generate(model, processor, imgs[:1], args.prompt, method="greedy", max_new_tokens=4)  # warm-up
    seconds = {m: [] for m in METHODS}
    for img in imgs:
        for method in METHODS:
            start = time.perf_counter()
            generate(model, processor, [img], args.prompt, method=method, **kwargs)
            seconds[method].append(time.perf_counter() - start)
    per_sample = {m: statistics.mean(v) for m, v in seconds.items()}
    result = {"model": args.model, "n": len(imgs), "new_tokens": args.new_tokens, "threads": torch.get_num_threads(),
              "env": environment(), "seconds_per_sample": per_sample,
              "ratio_to_greedy": {m: per_sample[m] / per_sample["greedy"] for m in METHODS}}
    atomic_write(Path(args.out), json.dumps(result, indent=2) + "\n")
    for m in METHODS:
        print(f"{m:7s} {per_sample[m]:.3f} s/sample  x{result['ratio_to_greedy'][m]:.3f}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
