"""Runs LALBJ/PAI's CFGLogits in its venv (see parity/vcd_pai.py for the adaptations).

stdin: JSON {input, repo, cases}; stdout: one JSON line.
"""

import json
from types import SimpleNamespace

import torch
from common import argparse_defaults, start, warpers

payload, inputs = start()
from CFG import CFGLogits  # noqa: E402
main, text = inputs["main"], inputs["contrast"]
steps, batch, _ = main.shape


class StandIn:
    """What CFGLogits asks of a model: layers with self_attn flags, and the text stream's logits step by step."""

    def __init__(self, layers: int):
        self.model = SimpleNamespace(layers=[SimpleNamespace(self_attn=SimpleNamespace()) for _ in range(layers)])
        self.step = 0

    def __call__(self, *args, **kwargs):
        logits = text[self.step][:, None, :]
        self.step += 1
        return SimpleNamespace(logits=logits, past_key_values=None)


results = []
for gamma, temperature, top_p in payload["cases"]:
    cfg = CFGLogits(gamma, torch.zeros(batch, 1, dtype=torch.long), StandIn(32), start_layer=2, end_layer=32)
    warp = warpers(temperature, top_p)
    logits, probs = [], []
    for step in range(steps):
        input_ids = torch.zeros(batch, 1 + step, dtype=torch.long)
        out = cfg(input_ids, main[step].clone())
        logits.append(out)
        probs.append(torch.softmax(warp(input_ids, out.clone()), dim=-1))
    results.append({"gamma": gamma, "temperature": temperature, "top_p": top_p,
                    "probs": torch.stack(probs).tolist(), "greedy": torch.stack(logits).argmax(-1).tolist()})

def attention_outputs() -> dict:
    """PAI's llama_new_forward on one LLaMA attention layer, the boost on for each alpha, and off."""
    from attention import llama_modify
    from safetensors.torch import load_file
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaAttention

    shape, weights = payload["shape"], load_file(payload["attention"])
    config = LlamaConfig(hidden_size=shape["hidden"], num_attention_heads=shape["heads"],
                         num_key_value_heads=shape["heads"], num_hidden_layers=1)
    layer = LlamaAttention(config)
    for name in "qkvo":
        getattr(layer, f"{name}_proj").weight.data.copy_(weights[f"{name}_proj"])
    holder = SimpleNamespace(model=SimpleNamespace(layers=[SimpleNamespace(self_attn=layer)]))
    hidden = weights["hidden_states"]
    n = hidden.shape[1]
    mask = torch.full((n, n), torch.finfo(torch.float32).min).triu(1)[None, None]
    out = {}
    for alpha in [None, *payload["alphas"]]:
        llama_modify(holder, 0, 1, alpha is not None, alpha or 0.0, False, *shape["image"])
        with torch.no_grad():
            result = layer.forward(hidden, attention_mask=mask, position_ids=torch.arange(n)[None])[0]
        out["off" if alpha is None else str(alpha)] = result.tolist()
    return out


defaults = {script: argparse_defaults(f"{payload['repo']}/{script}") for script in ("chair_eval.py", "pope_eval.py")}
print(json.dumps({"cases": results, "attention": attention_outputs(), "defaults": {s: {k: d.get(k) for k in ("alpha", "gamma", "start_layer", "end_layer")}
                                                  for s, d in defaults.items()}}))
