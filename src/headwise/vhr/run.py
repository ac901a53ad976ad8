"""The VHR recipes: what `headwise vhr describe|heads` and `headwise eval chair|pope --model` run, as plain
functions of a loaded model, its processor, the settings and (where one is written) the run directory.
The CLI, the benchmarks, the tests and the harness plug-ins call these; `vhr analyze`'s recipe is
`headwise.vhr.analyze.analyze`.
"""

from __future__ import annotations

from pathlib import Path

from headwise.config import Settings
from headwise.eval.vlm import ChairConfig, PopeConfig, run_chair, run_pope
from headwise.runs import Run
from headwise.vhr.config import DecodeConfig
from headwise.vhr.decode import decoder


def describe(model, processor, image, prompt: str, method: Settings, seed: int = 0, max_new_tokens: int = 64) -> dict:
    """One image described with a decoding method's settings; for VHR also the reinforced heads per layer."""
    from headwise.heads import layout
    from headwise.vhr import generate
    from headwise.vhr.methods import method_of

    out = generate(model, processor, [image], prompt, method, seed=seed, max_new_tokens=max_new_tokens)
    result = {"prompt": prompt, "method": method_of(method), "text": out.texts[0]}
    if out.heads is not None:
        result |= {"alpha": method.alpha, "head_choice": method.heads, "positions": method.positions,
                   "heads": {layer: out.heads[0, layer].nonzero().flatten().tolist()
                             for layer in range(layout(model).num_layers) if out.heads[0, layer].any()}}
    return result


def vision_heads(model, processor, image, prompt: str, top: int = 10, plot: Path | None = None,
                 title: str = "VHD") -> dict:
    """VHD of every head at the first generation step (nothing reinforced), the `top` most vision-aware heads,
    and with `plot` a layers x heads heatmap."""
    from headwise.plots import heatmap
    from headwise.vhr import head_divergence

    vhd = head_divergence(model, processor, image, prompt)
    order = vhd.flatten().argsort(descending=True)[:top].tolist()
    ranked = [{"layer": i // vhd.shape[1], "head": i % vhd.shape[1], "vhd": vhd.flatten()[i].item()} for i in order]
    result = {"prompt": prompt, "vhd": vhd.tolist(), "top_heads": ranked}
    if plot is not None:
        result["plot"] = str(heatmap(vhd.numpy(), plot, title, "VHD (L2)"))
    return result


def open_chair_run(out: str | Path | None, model_name: str, dtype: str, chair: ChairConfig,
                   decode: DecodeConfig, preset: str | None = None) -> Run:
    return Run(out, "eval chair", {"model": model_name, "dtype": dtype, "decode": decode}, chair, preset=preset)


def open_pope_run(out: str | Path | None, model_name: str, dtype: str, pope: PopeConfig,
                  decode: DecodeConfig, preset: str | None = None) -> Run:
    return Run(out, "eval pope", {"model": model_name, "dtype": dtype, "decode": decode}, pope, preset=preset)


def caption_chair(model, processor, chair: ChairConfig, decode: DecodeConfig, run: Run) -> dict | None:
    """The `eval chair --model` recipe: caption the sampled images with the decoding method, score CHAIR.
    Returns the summary on the main process (None on the others)."""
    return _summary(run_chair(decoder(model, processor, decode), chair, run), run)


def answer_pope(model, processor, pope: PopeConfig, decode: DecodeConfig, run: Run) -> dict | None:
    """The `eval pope --model` recipe: answer the POPE questions with the decoding method and score them."""
    return _summary(run_pope(decoder(model, processor, decode), pope, run), run)


def _summary(result: dict | None, run: Run) -> dict | None:
    if result is None:
        return None
    return result["metrics"] | {"run_dir": str(run.dir), "failures": len(result["failures"]),
                                "seconds_per_sample": result["seconds_per_sample"]}
