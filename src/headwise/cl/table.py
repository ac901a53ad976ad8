"""The OP/BWT table: several methods, each at its replay ratio, over several seeds, mean +- std.

Every (variant, seed) is an ordinary `headwise cl run` directory under OUT, so an interrupted table
continues where it stopped and any cell can be inspected with `headwise cl report`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from tqdm.auto import tqdm

from headwise.cl.config import BenchmarkConfig, CLConfig, check_method
from headwise.errors import HeadwiseError
from headwise.eval.stats import mean_std
from headwise.runs import Run, atomic_write, same_settings

DEFAULT_VARIANTS = "seqft,replay@0.01,replay@0.1,derpp@0.01,seekr@0.01"
COLUMNS = (("op", "OP"), ("bwt", "BWT 1/(T-1)"), ("bwt_paper", "BWT 1/T (paper)"), ("fwt", "FWT"))


class Variant(NamedTuple):
    """A row of the table: a method at a replay ratio, and for SEEKR optionally its own lambda."""
    method: str
    ratio: float
    lam: float | None = None

    @property
    def label(self) -> str:
        name = self.method if self.method == "seqft" else f"{self.method}@{self.ratio:g}"
        return name if self.lam is None else f"{name}:lam={self.lam:g}"

    @property
    def folder(self) -> str:
        return self.label.replace(":lam=", "-lam")


def parse_variants(spec: str) -> list[Variant]:
    """'seqft,replay@0.01,seekr@0.01,seekr@0.01:lam=1.5' -> variants; seqft keeps no buffer, so needs no ratio;
    `:lam=X` gives a SEEKR row its own attention-distillation weight (the others take --lam)."""
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        head, _, lam = part.partition(":")
        method, _, ratio = head.partition("@")
        try:
            check_method(method)
        except HeadwiseError as err:
            raise HeadwiseError(f"{str(err).rstrip('.')} (in {part!r}).") from None
        if method != "seqft" and not ratio:
            raise HeadwiseError(f"{part!r} needs a replay ratio, like {method}@0.01.")
        try:
            value = float(ratio) if ratio else 0.01
        except ValueError:
            raise HeadwiseError(f"the replay ratio in {part!r} is not a number.") from None
        weight = None
        if lam:
            if method != "seekr" or not lam.startswith("lam="):
                raise HeadwiseError(f"{part!r}: only seekr takes an option, written like seekr@0.01:lam=1.5.")
            try:
                weight = float(lam[4:])
            except ValueError:
                raise HeadwiseError(f"the lambda in {part!r} is not a number.") from None
        out.append(Variant(method, value, weight))
    if not out:
        raise HeadwiseError("no methods given; use e.g. --methods seqft,replay@0.01,seekr@0.01.")
    return out


def label(method: str, ratio: float, lam: float | None = None) -> str:
    return Variant(method, ratio, lam).label


def table(out: str | Path, variants: list[Variant] | list[tuple], seeds: list[int], base: CLConfig,
          run_one: Callable[[Path, CLConfig], dict], settings: dict | None = None,
          log: Callable[[str], None] = print, jobs: int = 1, bench: BenchmarkConfig | None = None,
          preset: str | None = None) -> dict:
    """The `cl table` recipe: run (or resume) every cell with `run_one(run_dir, config)` and write OUT/table.md and
    results.json.

    `settings` (model, dtype) and `bench` are recorded with the table and with each cell, as `cl run` records
    them. With `jobs` > 1 the cells run in that many worker processes (spawned, so `run_one` must be
    picklable), each with an equal share of the CPU threads; the table is the same either way.
    """
    out = Path(out)
    if jobs < 1:
        raise HeadwiseError(f"--jobs must be at least 1, not {jobs}.")
    variants = [Variant(*v) for v in variants]
    # Seed by seed, so a table computed in parts has whole seeds (and their paired differences) first.
    cells = [(v, s) for s in seeds for v in variants]
    configs = [replace(base, method=v.method, replay=v.ratio, seed=s, lam=base.lam if v.lam is None else v.lam)
               for v, s in cells]  # validates every cell first
    parts = (bench,) if bench is not None else ()
    table_run = Run(out, "cl table", {"variants": [v.label for v in variants], "seeds": seeds, "base": base,
                                      **(settings or {})}, *parts, preset=preset)
    dirs = [out / f"{v.folder}-seed{s}" for v, s in cells]
    start = time.perf_counter()
    results = [finished(d, settings or {}, *parts, cfg) for d, cfg in zip(dirs, configs)]
    todo = [k for k, r in enumerate(results) if r is None]
    if len(todo) < len(dirs):
        log(f"{len(dirs) - len(todo)} of {len(dirs)} runs already finished; running the other {len(todo)}")
    for k, res in zip(todo, _run_cells(run_one, [dirs[k] for k in todo], [configs[k] for k in todo], jobs, log)):
        results[k] = res
    per: dict[str, dict[str, list[float]]] = {v.label: {} for v in variants}
    for (v, s), res in zip(cells, results):
        row = per[v.label]
        for key, _ in COLUMNS:
            row.setdefault(key, []).append(res[key])
        # Training time as the run recorded it, so a resumed table reports what the cells cost, not the resume.
        row.setdefault("train_seconds", []).append(sum(v.get("seconds", 0.0) for v in res["timing"].values()))
        if res.get("op_se") is not None:  # OP's sampling error over the test items (runs since 0.2 record it)
            row.setdefault("op_se", []).append(res["op_se"])
    summary = {name: {k: mean_std(v) for k, v in row.items()} for name, row in per.items()}
    paired = paired_differences(per, variants)
    # Wall time of this invocation (a resumed table counts only what was left to run).
    result = {"table": summary, "paired": paired, "markdown": markdown(summary, paired), "jobs": jobs,
              "wall_seconds": time.perf_counter() - start}
    atomic_write(out / "table.md", result["markdown"] + "\n")
    _plot(summary, out / "table.png")
    table_run.finish(result)
    return result


def finished(run_dir: Path, settings: dict, *parts) -> dict | None:
    """A cell's results when its run finished with these settings (the run directory's one rule,
    `headwise.runs.same_settings`), read from its results.json alone, so a table resumes from the results of
    finished runs even without their checkpoints (as committed)."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        return None
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    if res.get("complete") and res.get("command") == "cl run" and same_settings(res.get("config"), settings, *parts):
        return res
    return None


def _run_cells(run_one, dirs: list[Path], configs: list[CLConfig], jobs: int, log) -> list[dict]:
    if jobs == 1:
        results = []
        for k, (d, cfg) in enumerate(zip(dirs, configs)):
            log(f"[{k + 1}/{len(dirs)}] {d.name}")
            results.append(run_one(d, cfg))
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # Spawned workers, not forked: a fork of a process that has run torch's thread pool can deadlock.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_share_threads,
                             initargs=(jobs,)) as pool:
        futures = {pool.submit(run_one, d, cfg): k for k, (d, cfg) in enumerate(zip(dirs, configs))}
        results: list[dict | None] = [None] * len(dirs)
        try:
            for f in tqdm(as_completed(futures), total=len(futures), desc=f"table ({jobs} jobs)", unit="run"):
                results[futures[f]] = f.result()
                log(f"done: {dirs[futures[f]].name}")
        except BaseException:
            # Runs already going finish and keep their results; the ones not started are dropped.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results


def _share_threads(jobs: int) -> None:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, cores // jobs))


def paired_differences(per: dict[str, dict[str, list[float]]], variants: list[Variant]) -> dict:
    """Per-seed differences of every SEEKR variant against every replay variant, in OP and BWT.

    Each cell of a seed shares its data order and buffers' seed with the other cells of that seed, so the
    paired difference removes the seed-to-seed spread that the separate means carry.
    """
    out = {}
    for v in variants:
        if v.method != "seekr":
            continue
        for w in variants:
            if w.method != "replay":
                continue
            a, b = per[v.label], per[w.label]
            out[f"{v.label} - {w.label}"] = {key: mean_std([x - y for x, y in zip(a[key], b[key])])
                                              for key in ("op", "bwt")}
            out[f"{v.label} - {w.label}"]["buffer_ratio"] = w.ratio / v.ratio
    return out


def markdown(summary: dict, paired: dict | None = None) -> str:
    se = any("op_se" in row for row in summary.values())
    head = ["method"] + [h for _, h in COLUMNS] + ["train s / run"] + (["OP SE over test items"] if se else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in summary.items():
        cells = [f"{100 * row[k]['mean']:.1f} ± {100 * row[k]['std']:.1f}" for k, _ in COLUMNS]
        cells.append(f"{row['train_seconds']['mean']:.0f}")
        if se:
            cells.append(f"{100 * row['op_se']['mean']:.2f}" if "op_se" in row else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if paired:
        lines += ["", "Paired per-seed differences (points, mean ± std over seeds):", "",
                  "| difference | OP | BWT 1/(T-1) |", "|---|---|---|"]
        for name, d in paired.items():
            lines.append(f"| {name} | {100 * d['op']['mean']:+.1f} ± {100 * d['op']['std']:.1f} | "
                         f"{100 * d['bwt']['mean']:+.1f} ± {100 * d['bwt']['std']:.1f} |")
        for name, d in paired.items():
            if round(d["buffer_ratio"], 6) == 10:
                holds = round(100 * d["op"]["mean"], 6) >= -1.0  # -1.0 exactly holds, float noise aside
                lines.append(f"\nThe paper's claim (SEEKR with a tenth of the buffer matches replay; here "
                             f"{name} at least -1 point of OP): {'holds' if holds else 'does not hold'} "
                             f"({100 * d['op']['mean']:+.1f} points).")
    return "\n".join(lines)


def _plot(summary: dict, path: Path) -> Path:
    from headwise.plots import plt, save

    names = list(summary)
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.4 * len(names) + 2), 3.2))
    for ax, (key, title) in zip(axes, (("op", "OP (higher is better)"), ("bwt", "BWT 1/(T-1) (0 = no forgetting)"))):
        ax.bar(range(len(names)), [100 * summary[n][key]["mean"] for n in names],
               yerr=[100 * summary[n][key]["std"] for n in names], capsize=3, color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_title(title)
    fig.tight_layout()
    return save(fig, path)
