"""Calibration statistics, collected once on the dense model and cached: the calibration tokens, the dense
model's next-token log-probabilities on them (the reference of the KL objective), the L2 norm of every input
feature of every linear layer inside the decoder blocks (Wanda's statistic, also OWL's) and, only when SparseGPT
is asked for, each layer's Hessian 2 X^T X / tokens (in_features^2 floats, so one per distinct input: q/k/v and
gate/up share theirs)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from headwise.assets.wiki import TEXT_SOURCES, load_text
from headwise.compress.config import CalibConfig
from headwise.errors import HeadwiseError
from headwise.eval.perplexity import token_windows
from headwise.heads.layout import layout


def block_linears(model) -> list[list[tuple[str, nn.Module]]]:
    """The prunable linear layers (nn.Linear or GPT-2's Conv1D) of each decoder block, by name within it."""
    out = []
    for block in layout(model).layers:
        out.append([(name, mod) for name, mod in block.named_modules()
                    if isinstance(mod, nn.Linear) or type(mod).__name__ == "Conv1D"])
    return out


def texts(data: str) -> tuple[str, str]:
    """(calibration text, perplexity text): train and test splits of a named source; for a file, its first
    80% and last 20% by characters so calibration never sees the scored text."""
    if data in TEXT_SOURCES:
        return load_text(data, "train"), load_text(data, "test")
    text = load_text(data)
    cut = int(len(text) * 0.8)
    return text[:cut], text[cut:]


@dataclass
class Calibration:
    ids: torch.Tensor                 # [windows, seq_len] calibration tokens
    dense_logp: torch.Tensor          # [windows, seq_len, vocab] dense next-token log-probs, float32
    norms: list[dict[str, torch.Tensor]]  # per block: linear name -> ||X_j||_2 over calibration tokens
    ppl_ids: torch.Tensor             # [ppl_windows, seq_len] perplexity windows
    # per block: linear name -> Hessian; linears with the same input hold the same tensor. None unless SparseGPT.
    hessians: list[dict[str, torch.Tensor]] | None = None

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        from headwise.runs import atomic_write

        tensors = {"ids": self.ids, "dense_logp": self.dense_logp, "ppl_ids": self.ppl_ids}
        for b, block in enumerate(self.norms):
            for name, v in block.items():
                tensors[f"norm.{b}.{name}"] = v
        for b, block in enumerate(self.hessians or []):
            # A shared Hessian is stored once, under its linears' names joined by commas.
            shared: dict[int, list[str]] = {}
            for name, h in block.items():
                shared.setdefault(id(h), []).append(name)
            for names in shared.values():
                tensors[f"hessian.{b}.{','.join(names)}"] = block[names[0]]
        atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp)))

    @classmethod
    def load(cls, path: Path, num_blocks: int) -> Calibration:
        from safetensors.torch import load_file

        t = load_file(str(path))
        norms: list[dict[str, torch.Tensor]] = [{} for _ in range(num_blocks)]
        hessians: list[dict[str, torch.Tensor]] = [{} for _ in range(num_blocks)]
        for key, v in t.items():
            kind, _, rest = key.partition(".")
            if kind in ("norm", "hessian"):
                b, names = rest.split(".", 1)
                for name in names.split(",") if kind == "hessian" else [names]:
                    (norms if kind == "norm" else hessians)[int(b)][name] = v
        return cls(t["ids"], t["dense_logp"], norms, t["ppl_ids"], hessians if any(hessians) else None)


class _Hessians:
    """Sums 2 X^T X over the calibration tokens for each distinct input of one block's linears.

    Linears reading one tensor (q/k/v, gate/up) are called one after another, so a linear whose input equals
    the previous linear's shares that linear's Hessian; who shares with whom is fixed on the first batch.
    With `running_mean`, each window is folded in as locuslab/wanda's SparseGPT.add_batch does
    (lib/sparsegpt.py:27-38): H <- H * n / (n + 1), then + (sqrt(2 / (n + 1)) X)^T (sqrt(2 / (n + 1)) X), in
    float32; the same Hessian up to a constant factor (which the relative dampening cancels), rounded the
    reference's way.
    """

    def __init__(self, running_mean: bool = False):
        self.running_mean = running_mean
        self.sums: dict[str, torch.Tensor] = {}
        self.tokens: dict[str, int] = {}
        self.owner: dict[str, str] = {}
        self.last: tuple[torch.Tensor, str] | None = None

    def add(self, name: str, x: torch.Tensor) -> None:
        if name not in self.owner:
            prev = self.last
            same = prev is not None and prev[0].shape == x.shape and (prev[0] is x or torch.equal(prev[0], x))
            self.owner[name] = prev[1] if same else name
        owner = self.owner[name]
        self.last = (x, owner)
        if owner == name and self.running_mean:
            for window in x.reshape(-1, x.shape[-2], x.shape[-1]) if x.dim() > 2 else [x]:
                n = self.tokens.get(name, 0)  # windows, here
                h = self.sums[name] * (n / (n + 1)) if name in self.sums else 0
                scaled = math.sqrt(2 / (n + 1)) * window.float().t()
                self.sums[name] = h + scaled @ scaled.t()
                self.tokens[name] = n + 1
        elif owner == name:
            x = x.reshape(-1, x.shape[-1])
            x = x.to(torch.promote_types(x.dtype, torch.float32))  # float64 models keep float64
            h = 2 * x.t() @ x
            self.sums[name] = h if name not in self.sums else self.sums[name] + h
            self.tokens[name] = self.tokens.get(name, 0) + x.shape[0]

    def result(self) -> dict[str, torch.Tensor]:
        means = {name: (h if self.running_mean else h / self.tokens[name]).cpu() for name, h in self.sums.items()}
        return {name: means[owner] for name, owner in self.owner.items()}


class Recorder:
    """Forward pre-hooks on the given blocks' linears that sum each input feature's squares (Wanda's norms) and,
    with `hessians`, each distinct input's 2 X^T X; active inside `with`. `collect` records every block in one
    pass of the dense model, `sequential` one block at a time on the pruned blocks' outputs.

    Args:
        linears: per block, (name, module) of its prunable linears (`block_linears`, or a sub-list of it).
        hessians: also sum the Hessians (SparseGPT).
        running_mean: accumulate the squares as locuslab/wanda's WrappedGPT does (and the Hessians as its
            SparseGPT does, `_Hessians`), in float32: per window the
            squared L2 norm of each feature, folded into a running mean over windows. The same statistic up to a
            constant factor, but rounded the reference's way: sequential pruning amplifies a 1e-7 difference
            into 0.16% of SmolLM2's masks (docs/parity.md), so the faithful mode rounds as the reference does.
    """

    def __init__(self, linears: list[list[tuple[str, nn.Module]]], hessians: bool = False,
                 running_mean: bool = False):
        self.linears = linears
        self.running_mean = running_mean
        self.windows: list[dict[str, int]] = [{} for _ in linears]
        self.sq: list[dict[str, torch.Tensor]] = [{} for _ in linears]
        self.hess = [_Hessians(running_mean) for _ in linears] if hessians else None
        self.handles: list = []

    def __enter__(self) -> Recorder:
        for b, block in enumerate(self.linears):
            for name, mod in block:
                def hook(_m, args, b=b, name=name):
                    x = args[0].detach()
                    if self.running_mean:
                        self._fold(b, name, x)
                    else:
                        s = x.reshape(-1, x.shape[-1]).float().pow(2).sum(0).cpu()
                        acc = self.sq[b].get(name)
                        self.sq[b][name] = s if acc is None else acc + s
                    if self.hess is not None:
                        self.hess[b].add(name, args[0])  # the very tensor, so sharing is usually an identity check
                self.handles.append(mod.register_forward_pre_hook(hook))
        return self

    def _fold(self, b: int, name: str, x: torch.Tensor) -> None:
        for window in x.reshape(-1, x.shape[-2], x.shape[-1]) if x.dim() > 2 else [x]:
            n = self.windows[b].get(name, 0)
            acc = self.sq[b].get(name)
            acc = torch.zeros(x.shape[-1]) if acc is None else acc * (n / (n + 1))
            self.sq[b][name] = acc + torch.norm(window.float().t(), p=2, dim=1).cpu() ** 2 / (n + 1)
            self.windows[b][name] = n + 1

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def norms(self) -> list[dict[str, torch.Tensor]]:
        return [{name: v.sqrt() for name, v in block.items()} for block in self.sq]

    def hessians(self) -> list[dict[str, torch.Tensor]] | None:
        return [h.result() for h in self.hess] if self.hess else None


@torch.no_grad()
def dense_logp(model, ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The model's next-token log-probabilities on `ids`, float32 on the CPU."""
    device = next(model.parameters()).device
    return torch.cat([torch.log_softmax(model(input_ids=ids[i:i + batch_size].to(device), use_cache=False)
                                        .logits.float(), -1).cpu() for i in range(0, len(ids), batch_size)])


@torch.no_grad()
def heldout(model, tokenizer, config: CalibConfig, windows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, dense log-probs) of `windows` windows of the calibration text that come after the calibration
    windows: same source, tokens that neither the pruner's statistics nor a fit or search have seen."""
    cal_text, _ = texts(config.data)
    ids = token_windows(tokenizer, cal_text, config.seq_len, config.windows + windows)[config.windows:]
    if len(ids) < windows:
        raise HeadwiseError(f"the calibration text gives only {len(ids)} windows of {config.seq_len} tokens after "
                            f"the {config.windows} calibration ones, fewer than the {windows} held-out ones asked for.")
    return ids, dense_logp(model, ids, config.batch_size)


@torch.no_grad()
def collect(model, tokenizer, config: CalibConfig) -> Calibration:
    """One pass of the dense model over the calibration windows, recording log-probs, input norms and (for
    SparseGPT) Hessians."""
    cal_text, ppl_text = texts(config.data)
    ids = token_windows(tokenizer, cal_text, config.seq_len, config.windows)
    ppl_ids = token_windows(tokenizer, ppl_text, config.seq_len, config.ppl_windows)
    if len(ids) < config.windows:
        raise HeadwiseError(f"the calibration text gives only {len(ids)} windows of {config.seq_len} tokens, "
                            f"fewer than the {config.windows} asked for.")
    with Recorder(block_linears(model), config.method == "sparsegpt") as recorder:
        logp = dense_logp(model, ids, config.batch_size)
    norms, hessians = recorder.norms(), recorder.hessians()
    widest = max((len(h) for block in hessians or [] for h in block.values()), default=0)
    if ids.numel() < widest:
        # KL is measured on these same tokens, so an overfitted update would look better than it is.
        warnings.warn(f"SparseGPT calibrates on {ids.numel()} tokens, fewer than the widest layer input ({widest}): "
                      "its weight updates will fit these tokens and the KL objective will flatter it; use more "
                      "windows.", stacklevel=2)
    return Calibration(ids, logp, norms, ppl_ids, hessians)
