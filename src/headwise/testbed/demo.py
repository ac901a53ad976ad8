"""The VHR part of `headwise demo`: emoji-llava describes test scenes with greedy and with VHR decoding."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

DEMO_SEED = 7  # a test stream (training streams start at 1000)


def mark(caption: str, words: list[str]) -> str:
    """Caption with each hallucinated word in [brackets]."""
    for word in sorted(set(words), key=len, reverse=True):
        caption = re.sub(rf"\b({re.escape(word)}s?)\b", r"[\1]", caption)
    return caption


def figure(image_path: Path, captions: dict[str, tuple[str, list[str]]], vhd, path: Path) -> Path:
    import matplotlib.pyplot as plt
    from PIL import Image

    from headwise.plots import save

    # Constrained layout sizes each gap on its own; tight_layout gave every gap the width that the
    # heatmap's tick labels need, which left a wide empty band between the image and the captions.
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained",
                             gridspec_kw={"width_ratios": [1, 1.75, 1.1]})
    axes[0].imshow(Image.open(image_path))
    axes[0].set_title(image_path.name)
    axes[0].axis("off")
    axes[0].set_anchor("E")  # the square image sits against the captions, not in the middle of its column
    axes[1].axis("off")
    y = 0.95
    for method, (text, bad) in captions.items():
        axes[1].text(0, y, f"{method}:", weight="bold", va="top", transform=axes[1].transAxes)
        shown = textwrap.fill(textwrap.shorten(" ".join(mark(text, bad).split()), width=240, placeholder=" ..."),
                              width=80)
        axes[1].text(0, y - 0.08, shown, va="top", transform=axes[1].transAxes, fontsize=9)
        y -= 0.08 + 0.06 * (shown.count("\n") + 1) + 0.03
        axes[1].text(0, y, "hallucinated: " + (", ".join(bad) or "none"), color="red", va="top",
                     transform=axes[1].transAxes, fontsize=9)
        y -= 0.15
    im = axes[2].imshow(vhd, aspect="auto", cmap="viridis")
    fig.colorbar(im, ax=axes[2], label="VHD")
    axes[2].set(title="vision-aware head divergence", xlabel="head", ylabel="layer")
    axes[2].xaxis.get_major_locator().set_params(integer=True)
    return save(fig, path)


def run_vhr_demo(out: Path, n: int = 30) -> str:
    from headwise.models import load_model
    from headwise.testbed.evaluate import TableConfig, evaluate, open_run
    from headwise.vhr import head_divergence
    from headwise.vhr.inputs import load_image

    model, proc = load_model("emoji-llava")
    cfg = TableConfig(n=n, seeds=[DEMO_SEED], methods=["greedy", "vhr"], splits=["random"])
    result = evaluate(model, proc, cfg, open_run(out, cfg))
    details = {m: json.loads((out / f"seed{DEMO_SEED}-{m}-chair" / "chair_details.json").read_text())
               for m in cfg.methods}
    # The figure shows the first scene where greedy hallucinates, else the first scene.
    pick = next((i for i, d in enumerate(details["greedy"]) if d["hallucinated"]), 0)
    image = out / f"scenes-seed{DEMO_SEED}" / "images" / f"testbed_{details['greedy'][pick]['image_id']:06d}.png"
    vhd = head_divergence(model, proc, load_image(image), "Please describe this image in detail.")
    captions = {m: (details[m][pick]["caption"], [w for w, _ in details[m][pick]["hallucinated"]]) for m in details}
    fig = figure(image, captions, vhd.numpy(), out / "vhr_example.png")
    return "\n".join([result["markdown"], f"figure: {fig}", f"runs:   {out}"])

