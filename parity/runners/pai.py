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

defaults = {script: argparse_defaults(f"{payload['repo']}/{script}") for script in ("chair_eval.py", "pope_eval.py")}
print(json.dumps({"cases": results, "defaults": {s: {k: d.get(k) for k in ("alpha", "gamma", "start_layer", "end_layer")}
                                                  for s, d in defaults.items()}}))
