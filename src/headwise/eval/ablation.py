"""Head importance by ablation (`headwise heads scan`): remove each head in turn and measure the change in
perplexity.

Many ablations run in one batch: each row of a batch is one (head, text window) pair with its
own per-sample factors, so the scan costs heads x windows sequence-forwards, batched. It scores heads
with the spine's `scale_heads` and needs text and perplexity, so it lives here, not in `headwise.heads`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from headwise.assets.wiki import load_text
from headwise.config import Settings
from headwise.errors import HeadwiseError
from headwise.eval.perplexity import sequence_nll, token_windows
from headwise.heads import layout, scale_heads
from headwise.runs import Run

PARTIAL = "scan_partial.json"


@dataclass
class ScanConfig(Settings):
    """Settings of a head-ablation scan.

    Args:
        data: text source (wiki-en, wiki-fr, wiki-es or a UTF-8 file).
        seq_len: tokens per window.
        windows: number of windows (the text's first ones).
        batch_size: rows (one ablated head on one window) per forward pass.
        layers: layers to scan; all when None.
    """

    data: str = "wiki-en"
    seq_len: int = 256
    windows: int = 4
    batch_size: int = 8
    layers: list[int] | None = None

    def validate(self) -> None:
        if self.batch_size < 1 or self.windows < 1:
            raise HeadwiseError("batch_size and windows must be at least 1.")
        if self.seq_len < 2:
            raise HeadwiseError(f"--seq-len must be at least 2, got {self.seq_len}.")


def open_run(out: str | Path | None, model_name: str, dtype: str, config: ScanConfig, model=None) -> Run:
    """The run directory of a scan; with the model, its layers are checked first, so bad ones leave none."""
    if model is not None:
        for layer in config.layers or ():
            layout(model).check_layer(layer)
    return Run(out, "heads scan", {"model": model_name, "dtype": dtype}, config)


def run_scan(model, tokenizer, config: ScanConfig, run: Run, title: str = "", progress: bool = True) -> dict:
    """The `heads scan` recipe: scan, then results.json and heatmap.png in the run directory; returns the results."""
    from headwise.plots import heatmap

    result = scan(model, tokenizer, config, run=run, progress=progress)
    marks = [(t["layer"], t["head"]) for t in result["top_heads"][:10]]
    plot = heatmap(delta_matrix(result), run.path("heatmap.png"),
                   f"{title or 'model'}: perplexity increase when a head is ablated", "ppl increase (%)", marks=marks,
                   marks_label=f"the {len(marks)} heads whose ablation raises perplexity most")
    result |= {"run_dir": str(run.dir), "plot": str(plot)}
    run.finish(result)
    return result


@torch.no_grad()
def scan(model, tokenizer, config: ScanConfig, run=None, progress: bool = True) -> dict:
    """Ablate every head of the chosen layers and record the perplexity without it.

    With a `run` (headwise.runs.Run) the per-row losses are checkpointed after every batch, and a
    rerun in the same directory continues where it stopped.
    """
    lay = layout(model)
    layers = sorted({lay.check_layer(layer) for layer in config.layers}) if config.layers else list(range(lay.num_layers))
    windows = token_windows(tokenizer, load_text(config.data), config.seq_len, config.windows)
    n_win = len(windows)
    base_nll = sequence_nll(model, windows).mean().item()
    # One row per (layer, head, window), in a fixed order, so a checkpoint is just a prefix of losses.
    rows = [(layer, head, w) for layer in layers for head in range(lay.num_heads) for w in range(n_win)]
    done: list[float] = (run.read_json(PARTIAL) or {}).get("row_nll", []) if run else []
    bar = tqdm(total=len(rows), initial=len(done), desc="ablating heads", unit="row", disable=not progress)
    for start in range(len(done), len(rows), config.batch_size):
        chunk = rows[start:start + config.batch_size]
        factors = torch.ones(len(chunk), lay.num_layers, lay.num_heads)
        for i, (layer, head, _) in enumerate(chunk):
            factors[i, layer, head] = 0.0
        with scale_heads(model, factors):
            nll = sequence_nll(model, windows[[w for _, _, w in chunk]])
        done.extend(nll.tolist())
        if run is not None:
            run.write_json(PARTIAL, {"row_nll": done})
        bar.update(len(chunk))
    bar.close()

    ablated = [[None] * lay.num_heads for _ in range(lay.num_layers)]
    per_head = torch.tensor(done).view(len(layers), lay.num_heads, n_win).mean(-1)
    for i, layer in enumerate(layers):
        ablated[layer] = [math.exp(v) for v in per_head[i].tolist()]
    base_ppl = math.exp(base_nll)
    ranking = sorted(((ablated[l][h] - base_ppl, l, h) for l in layers for h in range(lay.num_heads)), reverse=True)
    return {
        "layout": lay.to_dict(),
        "scan": asdict(config) | {"layers": layers, "tokens": int(windows.numel())},
        "baseline_ppl": base_ppl,
        "ablated_ppl": ablated,
        "top_heads": [{"layer": l, "head": h, "ppl_increase": d} for d, l, h in ranking[:20]],
    }


def delta_matrix(result: dict) -> list[list[float]]:
    """Perplexity increase (%) per head, NaN for layers that were not scanned."""
    base = result["baseline_ppl"]
    return [[math.nan if v is None else 100.0 * (v / base - 1.0) for v in row] for row in result["ablated_ppl"]]


def scan_text(result: dict, top: int = 10) -> str:
    """The baseline perplexity and the `top` heads whose ablation raises it most."""
    lines = [f"baseline perplexity {result['baseline_ppl']:.3f} on {result['scan']['tokens']} tokens",
             "most important heads (perplexity increase when ablated):"]
    for t in result["top_heads"][:top]:
        lines.append(f"  layer {t['layer']:2d} head {t['head']:2d}  +{t['ppl_increase']:.3f}")
    lines += [f"results: {result['run_dir']}/results.json", f"plot:    {result['plot']}"]
    return "\n".join(lines)
