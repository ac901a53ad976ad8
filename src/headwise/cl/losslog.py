"""RUN/losses.jsonl: one line per training micro-step, so a run shows what each loss term did.

A line: `task` (name), `epoch`, `step` (0-based index in that epoch's micro-step order, task and
replay steps counted together), `kind` ("task" or "replay"), `loss` (what was back-propagated, before
the 1/grad-accum scaling), `grad_norm` (the total gradient norm before clipping, on micro-steps that
end with an optimizer step; null on the others) and `clipped`. Replay steps also hold `ce`, `kd` and
`attn`, each unweighted (`attn` is null for DER++, which has no attention term), and `attn_weighted`
(lambda x attn). Lines are appended as training goes; a resumed run first cuts the file back to the
position it resumes from, so no line is ever written twice.
"""

from __future__ import annotations

import math
from pathlib import Path

from headwise.runs import JsonlLog, jsonl_rows, read_jsonl

PARTS = ("ce", "kd", "attn", "attn_weighted")


def read(path: str | Path) -> list[dict]:
    """The whole lines of a losses.jsonl; a last line cut short by a kill is left out."""
    return read_jsonl(Path(path))


def read_run(run_dir: str | Path) -> list[dict]:
    """A run's losses.jsonl, or where it was packed with its experiment's raw logs (benchmarks/results keeps
    them in a raw.tar.gz in the run directory or beside it, as `<run>/losses.jsonl`)."""
    import tarfile

    run_dir = Path(run_dir)
    if (run_dir / "losses.jsonl").is_file():
        return read(run_dir / "losses.jsonl")
    for archive, member in ((run_dir / "raw.tar.gz", "losses.jsonl"),
                            (run_dir.parent / "raw.tar.gz", f"{run_dir.name}/losses.jsonl")):
        if archive.is_file():
            with tarfile.open(archive) as tar:
                try:
                    text = tar.extractfile(member).read().decode("utf-8")
                except KeyError:
                    continue
            return jsonl_rows(text)
    return []


class LossLog:
    """Appends the lines of one run; only the process that writes files holds one."""

    def __init__(self, path: Path, tasks: list[str]):
        self.path, self.order = Path(path), {name: i for i, name in enumerate(tasks)}
        self._log: JsonlLog | None = None

    def _position(self, rec: dict) -> tuple[int, int, int]:
        return self.order.get(rec["task"], len(self.order)), rec["epoch"], rec["step"]

    def resume_at(self, task: int, epoch: int, step: int) -> None:
        """Keep only the lines before micro-step (task, epoch, step), the first one the run will redo."""
        self._log = JsonlLog(self.path, keep=lambda r: self._position(r) < (task, epoch, step))

    def append(self, record: dict) -> None:
        if self._log is None:
            self._log = JsonlLog(self.path)
        self._log.append(record)


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def summarize(records: list[dict], tasks: list[str]) -> dict:
    """Per task: step counts, the mean of each replay loss part, clipped steps, and where replay fell."""
    out = {}
    for name in tasks:
        recs = [r for r in records if r["task"] == name]
        if not recs:
            continue
        replay = [r for r in recs if r["kind"] == "replay"]
        positions: dict[int, list[int]] = {}
        for r in replay:
            positions.setdefault(r["epoch"], []).append(r["step"])
        steps_per_epoch: dict[int, int] = {}
        for r in recs:
            steps_per_epoch[r["epoch"]] = max(steps_per_epoch.get(r["epoch"], 0), r["step"] + 1)
        out[name] = {
            "task_steps": sum(r["kind"] == "task" for r in recs), "replay_steps": len(replay),
            "task_loss": _mean([r["loss"] for r in recs if r["kind"] == "task"]),
            "replay_loss": _mean([r["loss"] for r in replay]),
            **{p: _mean([r.get(p) for r in replay]) for p in PARTS},
            "optimizer_steps": sum(r.get("grad_norm") is not None for r in recs),
            "clipped": sum(bool(r.get("clipped")) for r in recs),
            "replay_positions": {str(e): pos for e, pos in positions.items()},
            "steps_per_epoch": {str(e): n for e, n in steps_per_epoch.items()},
        }
    return out


def report(summary: dict) -> str:
    """The per-task summary as text, for `headwise cl report`."""
    def num(x):
        return "-" if x is None else f"{x:.4g}"

    lines = ["losses per task (replay parts are means over replay steps, unweighted except attn_weighted):",
             f"{'task':>12} {'task loss':>10} {'replay':>8} {'ce':>8} {'kd':>8} {'attn':>10} {'lam*attn':>10} "
             f"{'clipped':>9}"]
    for name, s in summary.items():
        lines.append(f"{name[:12]:>12} {num(s['task_loss']):>10} {num(s['replay_loss']):>8} {num(s['ce']):>8} "
                     f"{num(s['kd']):>8} {num(s['attn']):>10} {num(s['attn_weighted']):>10} "
                     f"{s['clipped']:>4}/{s['optimizer_steps']:<4}")
    for name, s in summary.items():
        for epoch, pos in s["replay_positions"].items():
            lines.append(f"{name}: epoch {int(epoch) + 1}: {len(pos)} replay steps at micro-steps "
                         f"{_ranges(pos)} of {s['steps_per_epoch'][epoch]}")
    return "\n".join(lines)


def _ranges(xs: list[int]) -> str:
    if len(xs) <= 8:
        return ", ".join(map(str, xs))
    return ", ".join(map(str, xs[:4])) + ", ..., " + ", ".join(map(str, xs[-2:]))


def plot(records: list[dict], tasks: list[str], path: Path) -> Path:
    """Loss parts against the micro-step across the whole run, tasks marked, log scale."""
    from headwise.plots import plt, save

    fig, ax = plt.subplots(figsize=(9, 3.8))
    x_of = {}
    for i, r in enumerate(records):
        x_of[id(r)] = i
    series = {"task loss (task steps)": [(x_of[id(r)], r["loss"]) for r in records if r["kind"] == "task"]}
    replay = [r for r in records if r["kind"] == "replay"]
    for part, label in (("ce", "replay CE"), ("kd", "replay logit KD"), ("attn_weighted", "replay lambda x attn KL")):
        series[label] = [(x_of[id(r)], r[part]) for r in replay if r.get(part) is not None]
    for (label, pts), style in zip(series.items(), ("-", "o", "s", "^")):
        pts = [(x, y) for x, y in pts if y is not None and y > 0]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, style, label=label, markersize=3, linewidth=0.8 if style == "-" else 0)
    ax.set_yscale("log")
    start = 0
    for name in tasks:
        n = sum(r["task"] == name for r in records)
        if n:
            ax.axvline(start - 0.5, color="grey", linewidth=0.6)
            ax.text(start, 1.0, name, transform=ax.get_xaxis_transform(), va="bottom", fontsize=8)
            start += n
    ax.set(xlabel="micro-step (all tasks, in order)", ylabel="loss")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return save(fig, path)
