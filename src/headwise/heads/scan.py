"""Head importance by ablation: remove each head in turn and measure the change in perplexity.

Many ablations run in one batch: each row of a batch is one (head, text window) pair with its
own per-sample factors, so the scan costs heads x windows sequence-forwards, batched.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from headwise.assets.wiki import load_text
from headwise.errors import HeadwiseError
from headwise.eval.perplexity import sequence_nll, token_windows
from headwise.heads.hooks import scale_heads
from headwise.heads.layout import layout

PARTIAL = "scan_partial.json"


@dataclass
class ScanConfig:
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


@torch.no_grad()
def scan(model, tokenizer, config: ScanConfig, run=None, progress: bool = True) -> dict:
    """Ablate every head of the chosen layers and record the perplexity without it.

    With a `run` (headwise.runs.Run) the per-row losses are checkpointed after every batch, and a
    rerun in the same directory continues where it stopped.
    """
    if config.batch_size < 1 or config.windows < 1:
        raise HeadwiseError("batch_size and windows must be at least 1.")
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
