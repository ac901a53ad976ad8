"""The testbed table: CHAIR and POPE for several decoding methods over several scene seeds, mean +- std.

Every (seed, method, task) is its own resumable run directory under OUT, so an interrupted table
continues where it stopped; every method sees the same scenes of a seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from headwise.eval.stats import mean_std
from headwise.eval.vlm import run_chair, run_pope
from headwise.runs import Run, atomic_write
from headwise.testbed.dataset import POPE_SPLITS, make
from headwise.vhr.decode import decode_config, decoder


@dataclass
class TableConfig:
    """Settings of `headwise testbed evaluate`.

    Args:
        n: scenes per seed. seeds: scene streams (test streams: below 1000). methods: decoding methods.
        splits: POPE splits to score. max_new_tokens: caption cap (answers get 8).
        alpha, layers: VHR settings; heads, positions: VHR's ablations (see headwise.vhr.core).
        batch_size: images per generate() call (captions and POPE answers).
    """

    model: str = "emoji-llava"
    n: int = 200
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=lambda: ["greedy", "vhr", "vcd", "pai"])
    splits: list[str] = field(default_factory=lambda: list(POPE_SPLITS))
    max_new_tokens: int = 64
    alpha: float = 2.0
    layers: list[int] | None = None
    batch_size: int = 6
    heads: str = "vhd"
    positions: str = "all"


def evaluate(out: str | Path, cfg: TableConfig, model=None, processor=None) -> dict:
    from headwise.models import load_model

    out = Path(out)
    if model is None:  # first: a --model that does not load must not leave a run directory behind
        model, processor = load_model(cfg.model)
    table_run = Run(out, "testbed evaluate", _recorded(cfg))
    rows: dict[str, dict[str, list[float]]] = {m: {} for m in cfg.methods}
    for seed in cfg.seeds:
        bench = out / f"scenes-seed{seed}"
        if not (bench / "scenes.jsonl").is_file():
            make(bench, n=cfg.n, seed=seed, progress=False)
        for method in cfg.methods:
            vhr = {"heads": cfg.heads, "positions": cfg.positions} if method == "vhr" else {}
            caption = decode_config(method=method, alpha=cfg.alpha, layers=cfg.layers, max_new_tokens=cfg.max_new_tokens,
                                    seed=seed, batch_size=cfg.batch_size, **vhr)
            run = Run(out / f"seed{seed}-{method}-chair", "eval chair",
                      {"model": cfg.model, "n": cfg.n, "decode": caption.__dict__})
            c = run_chair(decoder(model, processor, caption), bench / "images", bench / "annotations", cfg.n, run)
            row = rows[method]
            for key in ("chair_s", "chair_i", "recall", "len"):
                row.setdefault(key, []).append(c["metrics"][key])
            row.setdefault("seconds_per_caption", []).append(c["seconds_per_sample"])
            answer = decode_config(method=method, alpha=cfg.alpha, layers=cfg.layers, max_new_tokens=8, seed=seed,
                                   batch_size=cfg.batch_size, **vhr)
            for split in cfg.splits:
                run = Run(out / f"seed{seed}-{method}-pope-{split}", "eval pope",
                          {"model": cfg.model, "decode": answer.__dict__})
                p = run_pope(decoder(model, processor, answer), bench / f"pope_{split}.jsonl", bench / "images", run)
                for key in ("f1", "accuracy", "yes_ratio", "unparsed"):
                    row.setdefault(f"pope_{split}_{key}", []).append(p["metrics"][key])
    summary = {m: {k: mean_std(v) for k, v in row.items()} for m, row in rows.items()}
    result = {"table": summary, "markdown": markdown(summary, cfg)}
    atomic_write(out / "table.md", result["markdown"] + "\n")
    table_run.finish(result)
    return result


def _recorded(cfg: TableConfig) -> dict:
    """The settings written to config.yaml: the ablations only when set, so tables begun before they existed resume."""
    return {k: v for k, v in cfg.__dict__.items() if (k, v) not in (("heads", "vhd"), ("positions", "all"))}


def markdown(summary: dict, cfg: TableConfig) -> str:
    """One row per method: CHAIR, caption length, POPE F1 and accuracy per split, and the share of POPE answers
    that say neither yes nor no (over all splits), in percent, mean ± std over seeds."""
    cols = ["chair_s", "chair_i", "recall"] + [f"pope_{s}_f1" for s in cfg.splits] + [f"pope_{s}_accuracy" for s in cfg.splits]
    head = (["method", "CHAIR_S", "CHAIR_I", "recall", "words"] + [f"POPE {s} F1" for s in cfg.splits]
            + [f"POPE {s} acc." for s in cfg.splits] + ["POPE unparsed"] * bool(cfg.splits) + ["s / caption"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    # one seed has no spread to report; "± 0.0" would claim one
    spread = len(cfg.seeds) > 1
    for method, row in summary.items():
        cells = [f"{100 * row[c]['mean']:.1f}" + (f" ± {100 * row[c]['std']:.1f}" if spread else "") for c in cols]
        cells.insert(3, f"{row['len']['mean']:.1f}")
        if cfg.splits:
            cells.append(_unparsed(row, cfg.splits))
        cells.append(f"{row['seconds_per_caption']['mean']:.2f}")
        lines.append(f"| {_label(method, cfg)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _unparsed(row: dict, splits: list[str]) -> str:
    # rows of tables computed before the unparsed share was recorded have no value: say so, not 0
    values = [row[f"pope_{s}_unparsed"]["mean"] for s in splits if f"pope_{s}_unparsed" in row]
    return f"{100 * sum(values) / len(values):.1f}" if len(values) == len(splits) else "n/a"


def _label(method: str, cfg: TableConfig) -> str:
    """VHR's row names its settings, so a table read on its own says what was amplified."""
    if method != "vhr":
        return method
    layers = "default layers" if cfg.layers is None else "layers " + _ranges(cfg.layers)
    ablations = [f"{cfg.heads} heads"] * (cfg.heads != "vhd") + [f"{cfg.positions} positions"] * (cfg.positions != "all")
    return f"vhr (alpha {cfg.alpha:g}, {', '.join([layers, *ablations])})"


def _ranges(layers: list[int]) -> str:
    """[1, 17, 18, 19] -> "1, 17-19", the form --layers takes."""
    runs: list[list[int]] = []
    for layer in sorted(set(layers)):
        if runs and layer == runs[-1][1] + 1:
            runs[-1][1] = layer
        else:
            runs.append([layer, layer])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
