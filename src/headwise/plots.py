"""Matplotlib figures (Agg backend: no display needed)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def heatmap(matrix, path: str | Path, title: str, colorbar: str, marks=None, xlabel: str = "head",
            ylabel: str = "layer", cmap: str = "viridis", marks_label: str = "selected heads") -> Path:
    """A layers x heads heatmap; `marks` is an iterable of (layer, head) cells to outline in red, and
    `marks_label` says what they are in a legend below the plot (a red outline means nothing by itself)."""
    m = np.asarray(matrix, dtype=float)
    marks = list(marks or ())
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * m.shape[1] + 2), max(3.0, 0.22 * m.shape[0] + 1.5)))
    im = ax.imshow(m, aspect="auto", cmap=cmap, interpolation="nearest")
    fig.colorbar(im, ax=ax, label=colorbar)
    for layer, head in marks:
        ax.add_patch(plt.Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.set_xticks(range(m.shape[1]))
    if not marks:
        fig.tight_layout()
        return save(fig, path)
    # A legend under the plot, so it never hides cells.
    key = plt.Rectangle((0, 0), 1, 1, fill=False, edgecolor="red", linewidth=1.5)
    fig.legend([key], [f"red outline: {marks_label}"], loc="lower center", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1))
    return save(fig, path)


def save(fig, path: str | Path) -> Path:
    """Save a figure atomically as PNG and close it."""
    from headwise.runs import atomic_write

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write(Path(path), buf.getvalue())
    return Path(path)


def score_matrix(matrix, tasks: list[str], path: str | Path, base=None, title: str = "") -> Path:
    """The continual-learning score matrix: a row per model (base, then after each task), a column per task,
    the value written in every cell."""
    rows = ([list(base)] if base else []) + [list(r) for r in matrix]
    labels = (["base"] if base else []) + [f"after {t}" for t in tasks[:len(matrix)]]
    m = np.asarray(rows, dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(tasks) + 2.5), max(2.5, 0.5 * len(rows) + 1.5)))
    im = ax.imshow(m, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(1.0, float(np.nanmax(m))),
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, label="score")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if m[i, j] > 0.6 else "white")
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(title=title, xlabel="scored on task")
    fig.tight_layout()
    return save(fig, path)
