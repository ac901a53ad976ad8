"""Seconds per sample of greedy, VHR, VCD and PAI on the same model, images and length, as ratios to greedy.

    python benchmarks/vhr_overhead.py --model emoji-llava [--images DIR] [--n 4] [--new-tokens 128,4]
    python benchmarks/vhr_overhead.py --model tiny:llava      # a tiny random LLaVA (plumbing only)

One image per call. Every method generates exactly the given number of tokens (min_new_tokens =
max_new_tokens), so the ratios compare equal work. Methods run in interleaved rounds over the
images, --rounds times, and each length is reported on its own: 128 tokens is a caption, where the
prefill hardly shows; 4 tokens is a POPE answer, where it dominates. Goals (issue 14, one image,
emoji-llava): vhr / greedy <= 1.03 at 128 new tokens and <= 1.6 at 4; vcd is expected near 2.
Without --images, emoji-llava gets testbed scenes (stream 0) and tiny models synthetic pictures.
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


def images(folder: str | None, n: int, model: str):
    from PIL import Image

    if folder:
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:n]
        return [Image.open(p).convert("RGB") for p in files]
    if not model.startswith("tiny:"):
        from headwise.testbed.scenes import render, sample_scene

        return [render(sample_scene(0, i)) for i in range(n)]
    from headwise.testing_vlm import test_image

    return [test_image(i, size=(64, 64)) for i in range(n)]


def measure(model, processor, imgs, prompt: str, tokens: int, rounds: int) -> dict:
    """Mean seconds per sample of each method at `tokens` new tokens, and the ratios to greedy."""
    kwargs = {"max_new_tokens": tokens, "min_new_tokens": tokens}
    seconds = {m: [] for m in METHODS}
    for _ in range(rounds):
        for img in imgs:
            for method in METHODS:
                start = time.perf_counter()
                generate(model, processor, [img], prompt, method=method, **kwargs)
                seconds[method].append(time.perf_counter() - start)
    per_sample = {m: statistics.mean(v) for m, v in seconds.items()}
    return {"new_tokens": tokens, "calls_per_method": len(imgs) * rounds, "seconds_per_sample": per_sample,
            "ratio_to_greedy": {m: per_sample[m] / per_sample["greedy"] for m in METHODS}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny:llava")
    ap.add_argument("--images", default=None, help="folder of images (default: testbed scenes or synthetic ones)")
    ap.add_argument("--n", type=int, default=4, help="images")
    ap.add_argument("--new-tokens", default="128,4", help="comma-separated lengths, each measured on its own")
    ap.add_argument("--rounds", default="2,5", help="rounds over the images, per length (short ones need more)")
    ap.add_argument("--prompt", default="Please describe this image in detail.")
    ap.add_argument("--out", default="benchmarks/results/vhr_overhead.json")
    args = ap.parse_args()

    lengths = [int(t) for t in args.new_tokens.split(",")]
    rounds = [int(r) for r in args.rounds.split(",")]
    rounds += [rounds[-1]] * (len(lengths) - len(rounds))
    model, processor = load(args.model)
    imgs = images(args.images, args.n, args.model)
    for method in ("greedy", "vhr"):  # warm-up
        generate(model, processor, imgs[:1], args.prompt, method=method, max_new_tokens=4)
    runs = [measure(model, processor, imgs, args.prompt, t, r) for t, r in zip(lengths, rounds)]
    result = {"model": args.model, "n": len(imgs), "images_per_call": 1, "threads": torch.get_num_threads(),
              "env": environment(), "lengths": runs}
    atomic_write(Path(args.out), json.dumps(result, indent=2) + "\n")
    for run in runs:
        print(f"{run['new_tokens']} new tokens, {run['calls_per_method']} calls per method:")
        for m in METHODS:
            print(f"  {m:7s} {run['seconds_per_sample'][m]:.3f} s/sample  x{run['ratio_to_greedy'][m]:.3f}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
