"""The testbed table: CHAIR and POPE for several decoding methods over several scene seeds, mean +- std.

Every (seed, method, task) is its own resumable run directory under OUT, so an interrupted table
continues where it stopped; every method sees the same scenes of a seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from headwise.config import Settings
from headwise.errors import HeadwiseError
from headwise.eval.stats import mean_std
from headwise.eval.vlm import ChairConfig, PopeConfig, run_chair, run_pope
from headwise.runs import Run, atomic_write
from headwise.testbed.dataset import POPE_SPLITS, make
from headwise.vhr.config import DecodeConfig, VHRConfig
from headwise.vhr.decode import decoder


@dataclass
class TableConfig(Settings):
    """Settings of `headwise testbed evaluate`.

    Args:
        model: the vision-language model (recorded; the caller loads it). dtype: its weights' dtype.
        n: scenes per seed. seeds: scene streams (test streams: below 1000). methods: decoding methods.
        splits: POPE splits to score. max_new_tokens: caption cap (answers get 8).
        batch_size: images per generate() call (captions and POPE answers).
        vhr: VHR's settings and ablations for the vhr rows (see headwise.vhr.config.VHRConfig).
    """

    model: str = "emoji-llava"
    n: int = 200
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=lambda: ["greedy", "vhr", "vcd", "pai"])
    splits: list[str] = field(default_factory=lambda: list(POPE_SPLITS))
    max_new_tokens: int = 64
    batch_size: int = 6
    dtype: str = "auto"
    vhr: VHRConfig = field(default_factory=VHRConfig)

    def validate(self) -> None:
        from headwise.vhr.methods import check_method

        for m in self.methods:
            check_method(m)
        for s in self.splits:
            if s not in POPE_SPLITS:
                raise HeadwiseError(f"unknown POPE split {s!r}; choose from {', '.join(POPE_SPLITS)}.")
        if min(self.batch_size, self.n, self.max_new_tokens) < 1:
            raise HeadwiseError("--n, --batch-size and --max-new-tokens must be at least 1.")

    @classmethod
    def upgrade(cls, record: dict) -> dict:
        """Releases up to 0.1.0 recorded VHR's settings flat (alpha, layers, and heads and positions where not the
        default); they are the nested `vhr` settings now."""
        record = dict(record)
        flat = {k: record.pop(k) for k in ("alpha", "layers", "heads", "positions") if k in record}
        if flat:
            record["vhr"] = {**record.get("vhr", {}), **flat}
        return record

    def decode(self, method: str, seed: int, max_new_tokens: int) -> DecodeConfig:
        return DecodeConfig(method=method, options=self.vhr if method == "vhr" else None,
                            max_new_tokens=max_new_tokens, seed=seed, batch_size=self.batch_size)


def open_run(out: str | Path, cfg: TableConfig, preset: str | None = None) -> Run:
    return Run(out, "testbed evaluate", {}, cfg, preset=preset)


def evaluate(model, processor, cfg: TableConfig, run: Run) -> dict:
    """The `testbed evaluate` recipe: every (seed, method, task) as its own resumable run under `run`'s directory,
    then the table (table.md, results.json)."""
    out = run.dir
    rows: dict[str, dict[str, list[float]]] = {m: {} for m in cfg.methods}
    for seed in cfg.seeds:
        bench = out / f"scenes-seed{seed}"
        if not (bench / "scenes.jsonl").is_file():
            make(bench, n=cfg.n, seed=seed, progress=False)
        for method in cfg.methods:
            caption = cfg.decode(method, seed, cfg.max_new_tokens)
            sub = Run(out / f"seed{seed}-{method}-chair", "eval chair", {"model": cfg.model, "n": cfg.n,
                                                                            "decode": caption})
            c = run_chair(decoder(model, processor, caption),
                          ChairConfig(images=str(bench / "images"), annotations=str(bench / "annotations"), n=cfg.n), sub)
            row = rows[method]
            for key in ("chair_s", "chair_i", "recall", "len"):
                row.setdefault(key, []).append(c["metrics"][key])
            row.setdefault("seconds_per_caption", []).append(c["seconds_per_sample"])
            answer = cfg.decode(method, seed, 8)
            for split in cfg.splits:
                sub = Run(out / f"seed{seed}-{method}-pope-{split}", "eval pope", {"model": cfg.model, "decode": answer})
                p = run_pope(decoder(model, processor, answer),
                             PopeConfig(images=str(bench / "images"), questions=str(bench / f"pope_{split}.jsonl")), sub)
                for key in ("f1", "accuracy", "yes_ratio", "unparsed"):
                    row.setdefault(f"pope_{split}_{key}", []).append(p["metrics"][key])
    summary = {m: {k: mean_std(v) for k, v in row.items()} for m, row in rows.items()}
    result = {"table": summary, "markdown": markdown(summary, cfg)}
    atomic_write(out / "table.md", result["markdown"] + "\n")
    run.finish(result)
    return result


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
    vhr = cfg.vhr
    layers = "default layers" if vhr.layers is None else "layers " + _ranges(vhr.layers)
    ablations = ([f"{vhr.heads} heads"] * (vhr.heads != "vhd") + [f"{vhr.positions} positions"] * (vhr.positions != "all")
                 + ["no outlier rule"] * (not vhr.outlier_rule) + ["image rows only"] * (not vhr.reinforce_text))
    return f"vhr (alpha {vhr.alpha:g}, {', '.join([layers, *ablations])})"


def _ranges(layers: list[int]) -> str:
    """[1, 17, 18, 19] -> "1, 17-19", the form --layers takes."""
    runs: list[list[int]] = []
    for layer in sorted(set(layers)):
        if runs and layer == runs[-1][1] + 1:
            runs[-1][1] = layer
        else:
            runs.append([layer, layer])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
