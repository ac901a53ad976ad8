"""Runs locuslab/wanda's own pruning functions where they lie (`lib/prune.py`: prune_wanda, prune_sparsegpt with
`lib/sparsegpt.py`), in a virtual environment of the reference's: transformers 4.44, whose Llama decoder layer
takes the `attention_mask` and `position_ids` the reference passes it and computes its rotary embedding itself,
or transformers 5 (headwise's), where the layers are given the rotary embedding the reference does not pass.

Input (JSON on stdin): repo, model_dir, tokens (a safetensors file with `ids`), method ("wanda" | "sparsegpt"),
sparsity, prune_n, prune_m, out (where the pruned block weights are written, safetensors).
Output (last line of stdout, JSON): seconds (the pruning call alone), the adaptations made.

Nothing of the reference is copied: its functions are imported from the repository folder and called as its
main.py calls them. What had to change around them is listed in ADAPTATIONS and returned.
"""

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ADAPTATIONS = [
    "lib.data.get_loaders (C4) replaced by our calibration tokens: (inputs, None) pairs of one [1, seqlen] window, "
    "the reference's own loader format",
    "model.hf_device_map = {} and model.seqlen = the windows' length (main.py sets them through accelerate)",
    "device cpu and torch.cuda.synchronize a no-op (lib/sparsegpt.py calls it after every layer)",
    "fp32 weights (the reference loads float16 on GPU); torch 2.13.0 CPU with 2 threads",
]
OLD_CONFIG = ("config.json of headwise's SmolLM2 folder (written by transformers 5) read back for transformers 4.44: "
              "rope_parameters.rope_theta -> rope_theta")
ROTARY = ("transformers >= 4.48 computes the rotary embedding once per model and passes it to every decoder layer "
          "as position_embeddings; the reference calls layers with position_ids alone, so each layer is wrapped to "
          "compute it from them with the model's own rotary_emb")


def transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def load_model(model_dir: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    if transformers_major() >= 5:
        return LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    raw = json.loads((Path(model_dir) / "config.json").read_text())
    rope = raw.pop("rope_parameters", None) or {}
    raw.setdefault("rope_theta", rope.get("rope_theta", 10000.0))
    raw.pop("dtype", None)
    config = LlamaConfig(**raw, torch_dtype=torch.float32)
    return LlamaForCausalLM.from_pretrained(model_dir, config=config, torch_dtype=torch.float32,
                                            attn_implementation="sdpa").eval()


def supply_position_embeddings(model) -> None:
    """Wrap each decoder layer so a call without position_embeddings gets them from its position_ids."""
    rotary = model.model.rotary_emb
    for layer in model.model.layers:
        def forward(hidden_states, *args, _forward=layer.forward, **kwargs):
            if kwargs.get("position_embeddings") is None:
                kwargs["position_embeddings"] = rotary(hidden_states, kwargs["position_ids"])
            return _forward(hidden_states, *args, **kwargs)
        layer.forward = forward


def main() -> None:
    job = json.loads(sys.stdin.read())
    torch.set_num_threads(job.get("threads", 2))
    sys.path.insert(0, job["repo"])
    import lib.prune as prune  # the reference, imported from where it lies

    from safetensors.torch import load_file, save_file

    ids = load_file(job["tokens"])["ids"]
    loader = [(ids[i:i + 1], None) for i in range(len(ids))]
    prune.get_loaders = lambda *args, **kwargs: (loader, None)
    torch.cuda.synchronize = lambda *args, **kwargs: None

    model = load_model(job["model_dir"])
    adaptations = list(ADAPTATIONS)
    if transformers_major() >= 5:
        supply_position_embeddings(model)
        adaptations.append(ROTARY)
    else:
        adaptations.append(OLD_CONFIG)
    model.seqlen = ids.shape[1]
    model.hf_device_map = {}
    args = SimpleNamespace(nsamples=len(ids), seed=0, sparsity_ratio=job["sparsity"], use_variant=False)
    fn = {"wanda": prune.prune_wanda, "sparsegpt": prune.prune_sparsegpt}[job["method"]]
    t0 = time.perf_counter()
    with torch.no_grad():
        fn(args, model, None, torch.device("cpu"), prune_n=job["prune_n"], prune_m=job["prune_m"])
    seconds = time.perf_counter() - t0

    weights = {}
    for b, layer in enumerate(model.model.layers):
        for name, mod in prune.find_layers(layer).items():
            weights[f"{b}.{name}"] = mod.weight.data.contiguous()
    save_file(weights, job["out"])
    print(json.dumps({"seconds": seconds, "adaptations": adaptations, "sparsity": prune.check_sparsity(model)}))


if __name__ == "__main__":
    main()
