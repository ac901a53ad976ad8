"""`headwise vhr`: describe an image with VHR or a baseline, plot a VHD heatmap, and run the paper's analysis."""

from __future__ import annotations

from pathlib import Path

import typer

from headwise.cli.common import DEVICE, DTYPE, JSON, MODEL, TRUST, emit, int_list, load, out_option

app = typer.Typer(help="Vision-aware head divergence and reinforcement (VHR) for vision-language models.",
                  no_args_is_help=True)

PROMPT = typer.Option("Please describe this image in detail.", help="Instruction given with the image.")
METHOD = typer.Option("vhr", help="Decoding method: vhr, greedy, vcd or pai.")
ALPHA = typer.Option(2.0, help="VHR: scale of the chosen heads (> 0; 1 changes nothing).")
LAYERS = typer.Option(None, help="VHR: reinforced layers, e.g. 1,17-29; default 1 plus the last 14/32 of the depth.")
MAX_NEW = typer.Option(64, help="Maximum number of new tokens.")
HEADS = typer.Option("vhd", help="VHR: which heads to reinforce: vhd (the paper's choice), random (as many per layer, "
                                  "drawn with --seed) or complement (as many, drawn from those VHD did not choose).")
POSITIONS = typer.Option("all", help="VHR: where to scale the heads: all (the paper) or generated (only the positions "
                                     "that predict output tokens).")
SEED = typer.Option(0, help="VHR: seed of the --heads random and complement draws.")


@app.command()
def describe(model: str = MODEL, image: Path = typer.Option(..., help="Image file (any format Pillow reads)."),
             prompt: str = PROMPT, method: str = METHOD, alpha: float = ALPHA, layers: str = LAYERS,
             heads: str = HEADS, positions: str = POSITIONS, seed: int = SEED,
             max_new_tokens: int = MAX_NEW, dtype: str = DTYPE, device: str = DEVICE,
             trust_remote_code: bool = TRUST, as_json: bool = JSON) -> None:
    """Describe an image; with --method vhr also list the reinforced heads per layer."""
    from headwise.heads import layout
    from headwise.vhr import generate
    from headwise.vhr.decode import decode_config
    from headwise.vhr.inputs import load_image

    layer_list = int_list(layers, "--layers")
    decode_config(method=method, alpha=alpha, layers=layer_list, heads=heads, positions=positions)  # before loading
    img = load_image(image)
    m, proc = load(model, dtype, device, trust_remote_code)
    extra = {"seed": seed} if method == "vhr" else {}
    out = generate(m, proc, [img], prompt, method=method, alpha=alpha, layers=layer_list, heads=heads,
                   positions=positions, max_new_tokens=max_new_tokens, **extra)
    result = {"model": model, "image": str(image), "prompt": prompt, "method": method, "text": out.texts[0]}
    lines = [out.texts[0]]
    if out.heads is not None:
        chosen = {layer: out.heads[0, layer].nonzero().flatten().tolist()
                  for layer in range(layout(m).num_layers) if out.heads[0, layer].any()}
        result |= {"alpha": alpha, "heads": chosen, "head_choice": heads, "positions": positions}
        lines.append(f"reinforced heads (x{alpha}): " + "; ".join(f"L{l}: {h}" for l, h in chosen.items()))
    emit(result, as_json, "\n".join(lines))


@app.command()
def heads(model: str = MODEL, image: Path = typer.Option(..., help="Image file."), prompt: str = PROMPT,
          plot: Path = out_option(None, "Write a layers x heads VHD heatmap to this PNG.", kind="file"),
          top: int = typer.Option(10, help="How many of the most vision-aware heads to print."),
          dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST, as_json: bool = JSON) -> None:
    """Vision-aware head divergence at the first generation step (nothing reinforced)."""
    from headwise.errors import HeadwiseError
    from headwise.plots import heatmap
    from headwise.vhr import head_divergence
    from headwise.vhr.inputs import load_image

    if top < 1:
        raise HeadwiseError(f"--top must be at least 1, got {top}.")
    img = load_image(image)
    m, proc = load(model, dtype, device, trust_remote_code)
    vhd = head_divergence(m, proc, img, prompt)
    order = vhd.flatten().argsort(descending=True)[:top].tolist()
    ranked = [{"layer": i // vhd.shape[1], "head": i % vhd.shape[1], "vhd": vhd.flatten()[i].item()} for i in order]
    result = {"model": model, "image": str(image), "prompt": prompt, "vhd": vhd.tolist(), "top_heads": ranked}
    if plot is not None:
        result["plot"] = str(heatmap(vhd.numpy(), plot, f"VHD: {Path(image).name}", "VHD (L2)"))
    text = "\n".join([f"most vision-aware heads of {model}:"] +
                     [f"  layer {r['layer']:2d} head {r['head']:2d}  VHD {r['vhd']:.4f}" for r in ranked] +
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
            out: Path = typer.Option(None, help="Run directory (config.yaml, captions.jsonl, mentions.jsonl, "
                                                "results.json, tvhd_hist.png, vhd_heatmap.png); rerun with the same "
                                                "one to resume."),
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
    from headwise.runs import Run
    from headwise.vhr.analyze import AnalyzeConfig, analyze as do_analyze, check_k, image_set, summary_text

    check_k(k)
    chosen = image_set(images, annotations, n, seed, synonyms)  # bad input fails before the model loads
    m, proc = load(model, dtype, device, trust_remote_code)
    from headwise.heads import layout

    check_k(k, layout(m).num_heads)
    cfg = AnalyzeConfig(n=n, seed=seed, k=k, prompt=prompt, max_new_tokens=max_new_tokens)
    run = Run(out, "vhr analyze", {"model": model, "images": str(images), "annotations": str(annotations),
                                   "synonyms": None if synonyms is None else str(synonyms), "dtype": dtype,
                                   **cfg.__dict__})
    result = do_analyze(m, proc, chosen, cfg, run)
    if result is None:
        return
    summary = {k_: v for k_, v in result.items() if k_ != "analysis"} | {"run_dir": str(run.dir)}
    emit(summary, as_json, summary_text(result) + f"\nresults: {run.dir}/results.json")
