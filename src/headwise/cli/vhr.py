"""`headwise vhr`: describe an image with VHR or a baseline, and plot a VHD heatmap."""

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


@app.command()
def describe(model: str = MODEL, image: Path = typer.Option(..., help="Image file (any format Pillow reads)."),
             prompt: str = PROMPT, method: str = METHOD, alpha: float = ALPHA, layers: str = LAYERS,
             max_new_tokens: int = MAX_NEW, dtype: str = DTYPE, device: str = DEVICE,
             trust_remote_code: bool = TRUST, as_json: bool = JSON) -> None:
    """Describe an image; with --method vhr also list the reinforced heads per layer."""
    from headwise.heads import layout
    from headwise.vhr import generate
    from headwise.vhr.core import check_alpha
    from headwise.vhr.inputs import load_image

    check_alpha(alpha)  # refuse bad input before the model loads
    img = load_image(image)
    m, proc = load(model, dtype, device, trust_remote_code)
    layer_list = int_list(layers, "--layers")
    out = generate(m, proc, [img], prompt, method=method, alpha=alpha, layers=layer_list,
                   max_new_tokens=max_new_tokens)
    result = {"model": model, "image": str(image), "prompt": prompt, "method": method, "text": out.texts[0]}
    lines = [out.texts[0]]
    if out.heads is not None:
        chosen = {layer: out.heads[0, layer].nonzero().flatten().tolist()
                  for layer in range(layout(m).num_layers) if out.heads[0, layer].any()}
        result |= {"alpha": alpha, "heads": chosen}
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
