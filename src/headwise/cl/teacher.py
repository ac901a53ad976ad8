"""Teacher signals of a finished task, on disk: one safetensors shard per task, float16, holding only
the selected heads' maps (at the sampled query rows) and the distilled positions' logits (top-k with
their vocabulary indices, or the full vocabulary). Loaded lazily, one task at a time."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from headwise.runs import atomic_write


def topk_logprobs(logits: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """[P, V] logits -> {"logprobs": [P, k] float16, "index": [P, k] int32}, or the full vocabulary if k = 0."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    if k <= 0 or k >= logp.shape[-1]:
        return {"logprobs": logp.half()}
    values, index = logp.topk(k, dim=-1)
    return {"logprobs": values.half(), "index": index.int()}


def causal_entries(rows: list[int] | None, n: int) -> torch.Tensor:
    """Bool [rows, n]: the keys each stored query row can attend to. Only these are stored, since the
    teacher's probabilities are exactly 0 elsewhere (about half the entries)."""
    q = torch.arange(n) if rows is None else torch.tensor(rows)
    return torch.arange(n)[None, :] <= q[:, None]


def write_shard(path: Path, task: str, items: list[int], heads: dict[int, list[int]], samples: list[dict]) -> int:
    """samples[i]: {"maps": {layer: [|H_l|, rows, n]}, "queries": list | None, "logits": topk_logprobs(...)}.
    Maps are stored packed, [|H_l|, causal entries]. Returns the file size in bytes."""
    tensors = {}
    queries, lengths = [], []
    for i, s in enumerate(samples):
        n = next(iter(s["maps"].values())).shape[-1] if s["maps"] else 0
        lengths.append(n)
        for l, m in s["maps"].items():
            tensors[f"s{i}.maps.{l}"] = m[:, causal_entries(s["queries"], n)].half().contiguous()
        for name, t in s["logits"].items():
            tensors[f"s{i}.{name}"] = t.contiguous()
        queries.append(s["queries"])
    meta = {"task": task, "items": json.dumps(items), "heads": json.dumps({str(l): h for l, h in heads.items()}),
            "queries": json.dumps(queries), "lengths": json.dumps(lengths)}
    data = save(tensors, metadata=meta)
    atomic_write(path, data)
    return len(data)


class TeacherShard:
    """One task's cached teacher signals; `sample(i)` loads one buffer sample's tensors."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with safe_open(str(self.path), framework="pt") as f:
            meta = f.metadata()
        self.task = meta["task"]
        self.items: list[int] = json.loads(meta["items"])
        self.heads = {int(l): h for l, h in json.loads(meta["heads"]).items()}
        self.queries: list[list[int] | None] = json.loads(meta["queries"])
        self.lengths: list[int] = json.loads(meta["lengths"])

    def sample(self, i: int) -> dict:
        with safe_open(str(self.path), framework="pt") as f:
            keys = set(f.keys())
            packed = {l: f.get_tensor(f"s{i}.maps.{l}") for l in self.heads}
        keep = causal_entries(self.queries[i], self.lengths[i])
        maps = {}
        for l, m in packed.items():
            maps[l] = torch.zeros(m.shape[0], *keep.shape, dtype=m.dtype)
            maps[l][:, keep] = m
        with safe_open(str(self.path), framework="pt") as f:
            logits = {name: f.get_tensor(f"s{i}.{name}") for name in ("logprobs", "index") if f"s{i}.{name}" in keys}
        return {"heads": self.heads, "maps": maps, "queries": self.queries[i], **logits}
