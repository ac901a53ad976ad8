"""Are the heads VHD chooses simply the loudest ones? A diagnostic for the testbed's VHR ablation.

    python benchmarks/vhr_head_norms.py --model emoji-llava --images runs/abl/base/scenes-seed0/images --n 40

VHR multiplies a chosen head's output by alpha, which adds (alpha - 1) x W_o[:, head] A_head to the residual
stream. If the heads VHD chooses write more into the residual stream than others, amplifying them is a larger
perturbation, whatever they read. For each image, at the first generation step (nothing reinforced), this
records each head's contribution norm ||W_o[:, head] A_head|| in the image row, chooses heads with the paper's
rule (VHD above the layer's median after the outlier rule, `vhr.heads.select_heads`; measured with nothing
reinforced, while VHR chooses a layer's heads after reinforcing the earlier ones), and reports per
reinforced layer the share of the layer's summed contribution norm that the chosen heads hold (a random
choice of as many heads holds their count share on average), and the ratio of the chosen heads' mean norm
to the other heads'. Norms are taken at the last prompt position (the one that predicts the first token).

Second question: does VHD choose the same heads whatever the image shows? For each image, the share of its
chosen heads (reinforced layers) that a plain gray image of the same size also gets chosen, and that the
next image of the set gets chosen; two independent choices of as many heads would share their count share.
Writes benchmarks/results/vhr_head_norms_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from headwise.heads import capture_heads, layout
from headwise.models import load_model
from headwise.runs import atomic_write, environment
from headwise.vhr.heads import default_layers, divergence, select_heads
from headwise.vhr.inputs import encode, to_device


def per_image(model, processor, image, prompt: str, lay) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen [layers, heads] bool, contribution norm [layers, heads]) at the first generation step."""
    batch = to_device(encode(model, processor, [image], [prompt], text_only=True), model)
    layers = list(range(lay.num_layers))
    with torch.no_grad(), capture_heads(model, layers=layers, last_only=True) as cap:
        model(**batch)
    chosen, norms = [], []
    for layer in layers:
        a = cap.outputs[layer][:, -1].float()  # [2 rows, heads, head_dim]: image row, image-free twin
        w = lay.out_weight(layer).float().view(-1, lay.num_heads, lay.head_dim)  # [out, heads, head_dim]
        norms.append(torch.einsum("ohd,hd->oh", w, a[0]).norm(dim=0))
        chosen.append(select_heads(divergence(a[:1], a[1:]), a[1:])[0])
    return torch.stack(chosen), torch.stack(norms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="emoji-llava")
    ap.add_argument("--images", required=True, help="a folder of images (testbed scenes)")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--prompt", default="Please describe this image in detail.")
    ap.add_argument("--out")
    args = ap.parse_args()
    from PIL import Image

    model, processor = load_model(args.model)
    lay = layout(model)
    files = sorted(Path(args.images).glob("*.png"))[: args.n]
    reinforced = default_layers(lay.num_layers)
    shares, ratios, counts, picks = {}, {}, {}, []
    gray = None
    for f in files:
        image = Image.open(f).convert("RGB")
        if gray is None:
            gray = per_image(model, processor, Image.new("RGB", image.size, (128, 128, 128)), args.prompt, lay)[0]
        chosen, norms = per_image(model, processor, image, args.prompt, lay)
        picks.append(chosen[reinforced])
        for layer in reinforced:
            c, x = chosen[layer], norms[layer]
            if c.all() or not c.any():
                continue
            shares.setdefault(layer, []).append((x[c].sum() / x.sum()).item())
            counts.setdefault(layer, []).append(c.float().mean().item())
            ratios.setdefault(layer, []).append((x[c].mean() / x[~c].mean()).item())
    rows = {layer: {"chosen_norm_share": statistics.mean(shares[layer]),
                    "chosen_count_share": statistics.mean(counts[layer]),
                    "chosen_vs_other_mean_norm": statistics.mean(ratios[layer])} for layer in sorted(shares)}
    late = [r for layer, r in rows.items() if layer >= 2]

    def shared(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a & b).sum() / a.sum().clamp(min=1)).item()

    g = gray[reinforced]
    overlap = {"with_gray_image": statistics.mean(shared(p, g) for p in picks),
               "with_next_image": statistics.mean(shared(p, picks[(i + 1) % len(picks)]) for i, p in enumerate(picks)),
               "chance": statistics.mean(p.float().mean().item() for p in picks)}
    result = {"model": args.model, "images": len(files), "prompt": args.prompt, "layers": rows,
              "late_layers_mean": {k: statistics.mean(r[k] for r in late) for k in late[0]} if late else {},
              "chosen_overlap": overlap, "env": environment()}
    out = Path(args.out or f"benchmarks/results/vhr_head_norms_{args.model.replace('/', '_')}.json")
    atomic_write(out, json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("images", "late_layers_mean", "chosen_overlap")}, indent=1))
    for layer, r in rows.items():
        print(f"layer {layer:2d}: chosen hold {100 * r['chosen_norm_share']:.0f}% of the norm with "
              f"{100 * r['chosen_count_share']:.0f}% of the heads; mean norm x{r['chosen_vs_other_mean_norm']:.2f}")


if __name__ == "__main__":
    main()
