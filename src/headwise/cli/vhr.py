"""`headwise vhr`: describe an image with VHR or a baseline, plot a VHD heatmap, and run the paper's analysis."""

from __future__ import annotations

from pathlib import Path

import typer

from headwise.cli.common import (ALPHA, DEVICE, DTYPE, HEADS, JSON, LAYERS, METHOD, MODEL, POSITIONS, PRESET, TRUST,
                                 emit, load, out_option, vhr_settings)

app = typer.Typer(help="Vision-aware head divergence and reinforcement (VHR) for vision-language models.",
                  no_args_is_help=True)

PROMPT = typer.Option("Please describe this image in detail.", help="Instruction given with the image.")


@app.command()
def describe(ctx: typer.Context, model: str = MODEL, image: Path = typer.Option(..., help="Image file (any format "
                                                                                          "Pillow reads)."),
             prompt: str = PROMPT, method: str = METHOD, alpha: float = ALPHA, layers: str = LAYERS,
             heads: str = HEADS, positions: str = POSITIONS,
             seed: int = typer.Option(0, help="VHR: seed of the --heads random and complement draws."),
             preset: str = PRESET, max_new_tokens: int = typer.Option(64, help="Maximum number of new tokens."),
             dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST, as_json: bool = JSON) -> None:
    """Describe an image; with --method vhr also list the reinforced heads per layer."""
    from headwise.vhr.config import check_vhr_preset, method_config
    from headwise.vhr.inputs import load_image
    from headwise.vhr.run import describe as do_describe

    check_vhr_preset(preset, [method])
    vhr = vhr_settings(ctx, preset, alpha, layers, heads, positions)  # checked before loading
    options = vhr if method == "vhr" else method_config(method)()
    img = load_image(image)
    m, proc = load(model, dtype, device, trust_remote_code)
    result = {"model": model, "image": str(image)} | do_describe(m, proc, img, prompt, options, seed, max_new_tokens)
    lines = [result["text"]]
    if "heads" in result:
        lines.append(f"reinforced heads (x{vhr.alpha}): " + "; ".join(f"L{l}: {h}" for l, h in result["heads"].items()))
    emit(result, as_json, "\n".join(lines))


@app.command()
def heads(model: str = MODEL, image: Path = typer.Option(..., help="Image file."), prompt: str = PROMPT,
          plot: Path = out_option(None, "Write a layers x heads VHD heatmap to this PNG.", kind="file"),
          top: int = typer.Option(10, help="How many of the most vision-aware heads to print."),
          dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST, as_json: bool = JSON) -> None:
    """Vision-aware head divergence at the first generation step (nothing reinforced)."""
    from headwise.errors import HeadwiseError
    from headwise.vhr.inputs import load_image
    from headwise.vhr.run import vision_heads

    if top < 1:
        raise HeadwiseError(f"--top must be at least 1, got {top}.")
    img = load_image(image)
    m, proc = load(model, dtype, device, trust_remote_code)
    result = {"model": model, "image": str(image)} | vision_heads(m, proc, img, prompt, top, plot,
                                                                 f"VHD: {Path(image).name}")
    text = "\n".join([f"most vision-aware heads of {model}:"] +
                     [f"  layer {r['layer']:2d} head {r['head']:2d}  VHD {r['vhd']:.4f}" for r in result["top_heads"]] +
                     ([f"plot: {result['plot']}"] if plot else []))
    emit(result, as_json, text)


@app.command()
def analyze(model: str = MODEL,
            images: Path = typer.Option(..., help="Folder of the images (file names as in the annotations)."),
            annotations: Path = typer.Option(..., help="Directory with COCO instances_*.json and captions_*.json, as "
                                                       "`eval chair` takes (`headwise testbed make` writes them)."),
            n: int = typer.Option(50, help="Images sampled (seeded, as `eval chair` samples) from the annotated ones."),
            seed: int = typer.Option(0, help="Seed of the image sample and of the bootstrap."),
            k: int = typer.Option(8, help="T-VHD sums the k largest VHD values of each layer (Eq. 5; the paper does "
                                          "not give k, 8 follows GLIMPSE); 1 to the heads per layer."),
            prompt: str = PROMPT,
            max_new_tokens: int = typer.Option(64, help="Caption length cap in tokens."),
            synonyms: Path = typer.Option(None, help="Object vocabulary in CHAIR's synonyms.txt format; headwise's "
                                                     "own table when omitted."),
            out: str = out_option(None, "Run directory (config.yaml, captions.jsonl, mentions.jsonl, results.json, "
                                        "tvhd_hist.png, vhd_heatmap.png); default runs/vhr-analyze/<time>. Rerun "
                                        "with the same one to resume."),
            dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST, as_json: bool = JSON) -> None:
    """The paper's analysis: do hallucinated object mentions have lower T-VHD, and which heads carry VHD?

    Captions each image greedily, computes T-VHD (Eq. 5) at every generated token, and lets CHAIR
    label each object mention correct or hallucinated. A mention's score is the T-VHD of its first
    sub-token (the token holding its first letter; for two-word objects such as "teddy bear", the
    first word's); a sentence's score is the mean T-VHD of its tokens, and it is hallucinated when
    it holds a hallucinated mention. Writes the AUROC of correct vs hallucinated (words and
    sentences, with bootstrap 95% intervals over images), how much of the first step's VHD the top
    5% of heads hold, and the rank correlation of each image's VHD map with a gray image's and with
    another image's.
    """
    from headwise.vhr.analyze import AnalyzeConfig, analyze as do_analyze, image_set, open_run, summary_text

    cfg = AnalyzeConfig(n=n, seed=seed, k=k, prompt=prompt, max_new_tokens=max_new_tokens)
    chosen = image_set(images, annotations, n, seed, synonyms)  # bad input fails before the model loads
    m, proc = load(model, dtype, device, trust_remote_code)
    run = open_run(out, model, dtype, images, annotations, synonyms, cfg, m)
    result = do_analyze(m, proc, chosen, cfg, run)
    if result is None:
        return
    summary = {k_: v for k_, v in result.items() if k_ != "analysis"} | {"run_dir": str(run.dir)}
    emit(summary, as_json, summary_text(result) + f"\nresults: {run.dir}/results.json")
