"""Calibration statistics, collected once on the dense model and cached: the calibration tokens, the dense
model's next-token log-probabilities on them (the reference of the KL objective) and, for Wanda, the L2 norm
of every input feature of every linear layer inside the decoder blocks."""

from __future__ import annotations

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

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        from headwise.runs import atomic_write

        tensors = {"ids": self.ids, "dense_logp": self.dense_logp, "ppl_ids": self.ppl_ids}
        for b, block in enumerate(self.norms):
            for name, v in block.items():
                tensors[f"norm.{b}.{name}"] = v
        tmp = Path(path).with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        atomic_write(path, tmp.read_bytes())
        tmp.unlink()

    @classmethod
    def load(cls, path: Path, num_blocks: int) -> Calibration:
        from safetensors.torch import load_file

        t = load_file(str(path))
        norms: list[dict[str, torch.Tensor]] = [{} for _ in range(num_blocks)]
        for key, v in t.items():
            if key.startswith("norm."):
                _, b, name = key.split(".", 2)
                norms[int(b)][name] = v
        return cls(t["ids"], t["dense_logp"], norms, t["ppl_ids"])


@torch.no_grad()
def collect(model, tokenizer, config: CalibConfig) -> Calibration:
    """One pass of the dense model over the calibration windows, recording log-probs and Wanda input norms."""
    cal_text, ppl_text = texts(config.data)
    ids = token_windows(tokenizer, cal_text, config.seq_len, config.windows)
    ppl_ids = token_windows(tokenizer, ppl_text, config.seq_len, config.ppl_windows)
    if len(ids) < config.windows:
        raise HeadwiseError(f"the calibration text gives only {len(ids)} windows of {config.seq_len} tokens, "
                            f"fewer than the {config.windows} asked for.")
    linears = block_linears(model)
    sq: list[dict[str, torch.Tensor]] = [{} for _ in linears]
    handles = []
    for b, block in enumerate(linears):
        for name, mod in block:
            def hook(_m, args, b=b, name=name):
                x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
                acc = sq[b].get(name)
                s = x.pow(2).sum(0).cpu()
                sq[b][name] = s if acc is None else acc + s
            handles.append(mod.register_forward_pre_hook(hook))
    device = next(model.parameters()).device
    logps = []
    try:
        for start in range(0, len(ids), config.batch_size):
            batch = ids[start:start + config.batch_size].to(device)
            logps.append(torch.log_softmax(model(input_ids=batch, use_cache=False).logits.float(), -1).cpu())
    finally:
        for h in handles:
            h.remove()
    norms = [{name: v.sqrt() for name, v in block.items()} for block in sq]
    return Calibration(ids, torch.cat(logps), norms, ppl_ids)
