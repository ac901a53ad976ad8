"""Baselines on the same evaluator: uniform sparsity, OWL, and a per-request evolutionary search in the style of
EvoPress ((1 + lambda) with level-switch mutations that keep the budget fixed, offspring screened on a
fraction of the calibration tokens and survivors re-scored on all of them)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from headwise.compress.calibration import block_linears
from headwise.compress.objectives import Evaluator
from headwise.errors import HeadwiseError


def uniform(num_blocks: int, sparsity: float) -> list[float]:
    return [float(sparsity)] * num_blocks


@torch.no_grad()
def owl(model, norms: list[dict[str, torch.Tensor]], sparsity: float, m: float = 5.0,
        lam: float = 0.08) -> list[float]:
    """OWL (Yin et al. 2024): blocks with more outlier Wanda scores (> m x the block's mean score) are pruned
    less; outlier ratios are mapped linearly onto [s - lam, s + lam] around the mean sparsity s."""
    ratios = []
    for b, linears in enumerate(block_linears(model)):
        scores = []
        for name, mod in linears:
            w = mod.weight.detach().float().cpu()
            w = w.t() if type(mod).__name__ == "Conv1D" else w
            scores.append((w.abs() * norms[b][name][None, :]).view(-1))
        s = torch.cat(scores)
        ratios.append((s > m * s.mean()).double().mean().item())
    lod = torch.tensor(ratios, dtype=torch.float64)
    spread = lod.max() - lod.min()
    density = (lod - lod.min()) / spread * 2 * lam if spread > 0 else torch.zeros_like(lod)
    density = density - density.mean() + (1 - sparsity)
    return [round(float(v), 6) for v in (1 - density).clamp(0.0, 0.99)]


@dataclass
class SearchConfig:
    """Per-request evolutionary search.

    Args:
        generations: generations of the (1 + offspring) search.
        offspring: children per generation, each with 1..max_mutations level switches.
        survivors: children re-scored on all calibration windows after screening.
        screen_windows: calibration windows used to screen children.
        step: sparsity moved from one block to another by a level switch (unstructured).
        max_ratio: largest per-block sparsity.
        max_mutations: most level switches per child.
        seed: seeds the search.
    """

    generations: int = 20
    offspring: int = 4
    survivors: int = 1
    screen_windows: int = 1
    step: float = 0.05
    max_ratio: float = 0.9
    max_mutations: int = 3
    seed: int = 0


def _mutate(x: list[float], space: str, cfg: SearchConfig, g: torch.Generator) -> list[float]:
    x = list(x)
    d = len(x)
    n = int(torch.randint(1, cfg.max_mutations + 1, (1,), generator=g))
    for _ in range(n):
        for _ in range(20):  # a few tries to find a legal (up, down) pair
            i, j = torch.randint(0, d, (2,), generator=g).tolist()
            if i == j:
                continue
            if space == "depth":
                if x[i] == 0.0 and x[j] == 1.0:
                    x[i], x[j] = 1.0, 0.0
                    break
            elif x[i] + cfg.step <= cfg.max_ratio + 1e-9 and x[j] - cfg.step >= -1e-9:
                x[i], x[j] = round(x[i] + cfg.step, 6), round(max(x[j] - cfg.step, 0.0), 6)
                break
    return x


def evo_search(ev: Evaluator, sparsity: float, cfg: SearchConfig, start: list[float] | None = None) -> dict:
    """Search the strategies of mean sparsity `sparsity` for the lowest KL; returns the best and its cost."""
    d = ev.num_blocks
    g = torch.Generator().manual_seed(cfg.seed)
    if ev.space == "depth":
        k = round(sparsity * d)
        if not 0 <= k < d:
            raise HeadwiseError(f"sparsity {sparsity} would remove all {d} blocks.")
        perm = torch.randperm(d, generator=g).tolist()
        parent = [1.0 if i in perm[:k] else 0.0 for i in range(d)]
    else:
        parent = list(start) if start is not None else uniform(d, sparsity)
    t0 = time.perf_counter()
    n0 = ev.evaluations
    best = ev.kl(parent)
    history = [best]
    screen = min(cfg.screen_windows, len(ev.calib.ids))
    full = screen >= len(ev.calib.ids)
    for _ in range(cfg.generations):
        children = [_mutate(parent, ev.space, cfg, g) for _ in range(cfg.offspring)]
        scored = sorted(((ev.kl(c, windows=screen), c) for c in children), key=lambda t: t[0])
        for screened, child in scored[:cfg.survivors]:
            value = screened if full else ev.kl(child)
            if value < best:
                best, parent = value, child
        history.append(best)
    return {"strategy": parent, "kl": best, "evaluations": ev.evaluations - n0,
            "seconds": time.perf_counter() - t0, "history": history}
