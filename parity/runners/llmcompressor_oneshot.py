"""Runs llmcompressor's WandaPruningModifier or SparseGPTModifier (PyPI) through its `oneshot` entry point with its
sequential pipeline, in its own virtual environment (parity/.venvs/llmcompressor).

Input (JSON on stdin): model_dir, tokens (a safetensors file with `ids`), method ("wanda" | "sparsegpt"),
sparsity, prune_n, prune_m, out (where the pruned block weights are written, safetensors).
Output (last line of stdout, JSON): seconds (the oneshot call), the adaptations made, the version.
"""

import json
import sys
import time

import torch

ADAPTATIONS = [
    "dataset: our calibration tokens as a datasets.Dataset of input_ids and attention_mask (no text, no "
    "tokenizer), num_calibration_samples = all of them, shuffle_calibration_samples=False, batch_size=1",
    "pipeline='sequential' (each decoder layer calibrated on the previous pruned layers' outputs) on the CPU; "
    "fp32 weights; torch 2.13.0 CPU with 2 threads",
]


def main() -> None:
    job = json.loads(sys.stdin.read())
    torch.set_num_threads(job.get("threads", 2))
    import llmcompressor
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import WandaPruningModifier
    from llmcompressor.modifiers.pruning.sparsegpt import SparseGPTModifier
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    ids = load_file(job["tokens"])["ids"]
    data = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
    model = AutoModelForCausalLM.from_pretrained(job["model_dir"], dtype=torch.float32).eval()
    cls = {"wanda": WandaPruningModifier, "sparsegpt": SparseGPTModifier}[job["method"]]
    structure = f"{job['prune_n']}:{job['prune_m']}"
    recipe = cls(sparsity=job["sparsity"], mask_structure=structure)
    t0 = time.perf_counter()
    oneshot(model=model, dataset=data, recipe=recipe, num_calibration_samples=len(ids), max_seq_length=ids.shape[1],
            shuffle_calibration_samples=False, batch_size=1, pipeline="sequential")
    seconds = time.perf_counter() - t0
    weights = {}
    for b, layer in enumerate(model.model.layers):
        for name, mod in layer.named_modules():
            if isinstance(mod, torch.nn.Linear):
                weights[f"{b}.{name}"] = mod.weight.data.contiguous()
    save_file(weights, job["out"])
    print(json.dumps({"seconds": seconds, "adaptations": ADAPTATIONS, "version": llmcompressor.__version__}))


if __name__ == "__main__":
    main()
