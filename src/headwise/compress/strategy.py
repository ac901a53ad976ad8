"""Requests and how they become strategies: validation, target sparsity -> preference by bisection,
projection onto feasible strategies, and the fingerprint that ties a StratNet to one model."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from headwise.compress.config import MAX_SPARSITY
from headwise.compress.depth import drop_top
from headwise.errors import HeadwiseError


def check_preference(pref) -> tuple[float, float]:
    if not isinstance(pref, (list, tuple)) or len(pref) != 2:
        raise HeadwiseError(f"a preference must be two numbers [size, quality], got {pref!r}.")
    try:
        a, b = float(pref[0]), float(pref[1])
    except (TypeError, ValueError):
        raise HeadwiseError(f"a preference must be two numbers [size, quality], got {pref!r}.") from None
    if not (math.isfinite(a) and math.isfinite(b)) or a < 0 or b < 0:
        raise HeadwiseError(f"preference weights must be non-negative, got {pref!r}.")
    if abs(a + b - 1.0) > 1e-6:
        raise HeadwiseError(f"preference weights must sum to 1, got {pref!r} (sum {a + b:g}).")
    return a, b


def check_sparsity(s) -> float:
    try:
        s = float(s)
    except (TypeError, ValueError):
        raise HeadwiseError(f"sparsity must be a number, got {s!r}.") from None
    if not math.isfinite(s) or not 0.0 <= s <= MAX_SPARSITY:
        raise HeadwiseError(f"sparsity must lie in [0, {MAX_SPARSITY}], got {s:g}.")
    return s


def read_requests(path: str | Path) -> list[dict]:
    """Parse requests.jsonl: one {"sparsity": s} or {"preference": [size, quality]} per line, optional "id"."""
    path = Path(path)
    if not path.is_file():
        raise HeadwiseError(f"requests file {path} does not exist.")
    out, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            req = json.loads(line)
        except json.JSONDecodeError as err:
            raise HeadwiseError(f"{path} line {n} is not JSON ({err.msg}).") from None
        if not isinstance(req, dict) or ("sparsity" in req) == ("preference" in req):
            raise HeadwiseError(f"{path} line {n} must hold exactly one of \"sparsity\" or \"preference\".")
        rid = str(req.get("id", f"r{len(out):03d}"))
        if not rid or "/" in rid or rid.startswith(".") or rid in seen:
            raise HeadwiseError(f"{path} line {n}: id {rid!r} is empty, repeated or not a plain folder name.")
        seen.add(rid)
        item = {"id": rid}
        try:
            if "sparsity" in req:
                item["sparsity"] = check_sparsity(req["sparsity"])
            else:
                item["preference"] = list(check_preference(req["preference"]))
        except HeadwiseError as err:
            raise HeadwiseError(f"{path} line {n}: {err}") from None
        out.append(item)
    if not out:
        raise HeadwiseError(f"{path} holds no requests.")
    return out


@torch.no_grad()
def preference_for_sparsity(net, target: float, iters: int = 40) -> tuple[float, float]:
    """The preference whose StratNet output has mean sparsity closest to `target`, by bisection on lambda_size
    (StratNet's mean sparsity grows with lambda_size once trained; the ends are clamped otherwise)."""
    def mean_at(lam):
        return net(torch.tensor([[lam, 1 - lam]], dtype=torch.float64)).mean().item()

    lo, hi = 0.0, 1.0
    if mean_at(lo) >= target:
        return (lo, 1.0)
    if mean_at(hi) <= target:
        return (hi, 0.0)
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_at(mid) < target else (lo, mid)
    lam = (lo + hi) / 2
    return (lam, 1 - lam)


def shift_to_sparsity(x: torch.Tensor, target: float, upper: float) -> torch.Tensor:
    """clip(x + c, 0, upper) with c found by bisection so the mean equals `target` (the shape is kept)."""
    x = x.double()
    upper = max(upper, target)
    lo, hi = -1.0, 1.0
    for _ in range(60):
        c = (lo + hi) / 2
        lo, hi = (c, hi) if (x + c).clamp(0, upper).mean().item() < target else (lo, c)
    return (x + (lo + hi) / 2).clamp(0, upper)


def project(x: torch.Tensor, space: str, target: float | None = None, upper: float = 0.9) -> list[float]:
    """A feasible strategy from StratNet's relaxed output: exact mean sparsity for unstructured requests with a
    target; for depth, the round(target * d) (or round(sum x)) blocks with the largest x_i removed."""
    x = x.detach().double().view(-1)
    if space == "depth":
        if target is None:
            # A relaxed output (a proposal while fitting) may sum to d; keep at least one block rather than fail.
            k = min(round(x.sum().item()), len(x) - 1)
        else:
            k = round(target * len(x))
            if k >= len(x):
                raise HeadwiseError(f"sparsity {target} would remove all {len(x)} blocks.")
        return [float(v) for v in drop_top(x, k)]
    if target is not None:
        x = shift_to_sparsity(x, target, upper)
    return [round(float(v), 6) for v in x]


def fingerprint(model) -> dict:
    """What a StratNet must match: the architecture and a digest of the input embeddings' leading values."""
    cfg = model.config.get_text_config()
    emb = model.get_input_embeddings().weight.detach()[:8].float().cpu()
    digest = hashlib.sha1(torch.round(emb * 1e3).to(torch.int64).numpy().tobytes()).hexdigest()[:16]
    return {"model_type": cfg.model_type, "num_layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size,
            "vocab_size": cfg.vocab_size, "embedding_digest": digest}
