"""Figures: per-request per-block sparsity profiles, and the learned Pareto front (size vs KL) against the
baselines' points."""

from __future__ import annotations

from pathlib import Path

from headwise.plots import save


def profiles(rows: list[dict], space: str, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    legend = len(rows) <= 12
    fig, ax = plt.subplots(figsize=(9 if legend else 7, 3.5))
    for r in rows:
        ax.plot(range(len(r["strategy"])), r["strategy"], marker="o", ms=3,
                label=f"{r['id']} (sparsity {r['sparsity']:.2f})")
    ax.set(xlabel="decoder block", ylabel="removed" if space == "depth" else "sparsity",
           title="per-block strategy of each request")
    if legend:
        # Outside the axes: inside, it covered the first blocks' points.
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return save(fig, path)


def pareto(points: dict[str, list[tuple[float, float]]], path: str | Path) -> Path:
    """points: method -> [(sparsity, kl)]; UniCuCo's points are drawn as a line, baselines as markers."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, pts in points.items():
        pts = sorted(pts)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        if method.lower().startswith("unicuco"):
            ax.plot(xs, ys, "-o", ms=3, label=method)
        else:
            ax.plot(xs, ys, "x" if "uniform" in method else "s", ms=5, label=method, linestyle="none")
    ax.set(xlabel="sparsity (fraction of block weights removed)", ylabel="KL(dense || pruned), nats/token",
           yscale="log", title="size vs quality")
    ax.legend()
    fig.tight_layout()
    return save(fig, path)
