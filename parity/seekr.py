"""SEEKR parity: jinghan1he/SEEKR's training/seekr.py and utils/llama_flash_att.py on a tiny LLaMA.

    .venv/bin/python parity/seekr.py            # writes parity/goldens/seekr.json
    .venv/bin/python parity/seekr.py --inputs   # rebuilds parity/inputs/seekr_* (seeded)

The reference runs in its own venv (transformers 4.31.0, its pin; torch 2.13.0 CPU) on saved inputs: four weight
sets of one random 4-layer LLaMA (A before a task, B after it and C after the next, D later in training) and
token buffers: one of equal lengths (16, no padding) and one of mixed lengths, which the reference pads to the
longest sample. Its functions run unchanged, in main()'s order: the maps before a task (get_replay_attns), the
teacher signals, sensitivity and forgettability after it (get_replay_logits_and_attns, get_replay_attn_diff),
the cumulative importance and the selection (select_layer_head), then replay steps of train_one_task. headwise's
side is computed from the same files by tests/parity/test_seekr_parity.py.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

REPO, COMMIT = "jinghan1he/SEEKR", "22fe44721baf6ae495b7b4bf19303c723bdb3512"
REQUIREMENTS = ["numpy", "torch==2.13.0", "transformers==4.31.0", "accelerate==0.21.0", "peft==0.6.2", "einops",
                "safetensors"]
WEIGHTS = harness.INPUTS / "seekr_llama.safetensors"
TOKENS = harness.INPUTS / "seekr_tokens.json"
CONFIG = {"vocab": 32, "hidden": 32, "intermediate": 64, "layers": 4, "heads": 4}
SPECIAL = {"pad": 0, "bos": 1, "eos": 2}
# The reference's --attn_layer_budget / --attn_head_budget, as counts: half the layers and a quarter of the heads, so
# that the selection tells importances apart (3 layers and 8 of their 12 heads would keep most of any ranking);
# BUDGET_GRID are further (layers, heads) pairs the selection is recorded for.
BUDGETS = {"layers": 2, "heads": 4}
BUDGET_GRID = [[2, 4], [2, 6], [3, 4], [3, 8], [4, 2]]
# 0: every row (the paper's script); 10: more rows than the 9 tokens of the shortest sample, drawn with replacement
QUERY_BUDGETS = [0, 10]
SEED = 1234
BATCH = 4
# (buffer items, task items, batch size, --replay_cycle): automatic cycles of 1 and 2, a given cycle of 3, and an
# automatic cycle of 0 (more replay batches than task batches), under which the reference never replays.
SCHEDULES = [{"buffer": 4, "task": 8, "batch_size": 2, "replay_cycle": 0},
             {"buffer": 4, "task": 20, "batch_size": 2, "replay_cycle": 0},
             {"buffer": 4, "task": 20, "batch_size": 2, "replay_cycle": 3},
             {"buffer": 4, "task": 2, "batch_size": 1, "replay_cycle": 0}]
BUFFER_SIZES = [[50, 0.01], [1000, 0.01], [250, 0.05], [20, 1], [20, 5], [7, 0.5]]
FILES = ["training/seekr.py", "utils/llama_flash_att.py", "data", "utils/utils.py", "utils/model_utils.py",
         "utils/ds_utils.py", "scripts/exp_seq_seekr.sh"]


def build_inputs() -> None:
    import torch
    from safetensors.torch import save_file

    rng = random.Random(26)

    def item(length: int, answer: int) -> dict:  # length counts BOS and EOS, which the collator adds
        body = [rng.randrange(3, CONFIG["vocab"]) for _ in range(length - 2)]
        return {"prompt": body[:-answer], "answer": body[-answer:]}

    buffers = {"equal": [item(16, a) for a in (4, 5, 3, 6)],
               "mixed": [item(n, a) for n, a in ((9, 2), (13, 3), (16, 4), (21, 4))]}
    task = [item(rng.randrange(6, 15), 3) for _ in range(20)]
    TOKENS.parent.mkdir(parents=True, exist_ok=True)
    TOKENS.write_text(json.dumps({"special": SPECIAL, "buffers": buffers, "task": task}, indent=1) + "\n")
    g = torch.Generator().manual_seed(26)
    h, f, v, layers = CONFIG["hidden"], CONFIG["intermediate"], CONFIG["vocab"], CONFIG["layers"]
    shapes = {"model.embed_tokens.weight": (v, h), "lm_head.weight": (v, h), "model.norm.weight": (h,)}
    for l in range(layers):
        p = f"model.layers.{l}."
        shapes |= {p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
                   p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h),
                   p + "mlp.down_proj.weight": (h, f)}
        shapes |= {p + f"self_attn.{n}_proj.weight": (h, h) for n in "qkvo"}
    # Weights of unit-scale activations (not the 0.02 of an untrained LLaMA), so attention is far from uniform.
    base = {k: (1 + 0.1 * torch.randn(s, generator=g)) if len(s) == 1 else torch.randn(s, generator=g) / s[-1] ** 0.5
            for k, s in shapes.items()}
    tensors, current = {}, base
    for name in "ABCD":  # each a step of "training" away from the one before
        if name != "A":
            current = {k: w + 0.15 * w.abs().mean() * torch.randn(w.shape, generator=g) for k, w in current.items()}
        # Stored in float16 (half the file); both sides compute in float32 on these exactly representable values.
        tensors |= {f"{name}.{k}": w.half().contiguous() for k, w in current.items()}
    save_file(tensors, str(WEIGHTS))
    print(f"wrote {WEIGHTS.relative_to(harness.ROOT)} and {TOKENS.relative_to(harness.ROOT)}")


def main() -> None:
    if "--inputs" in sys.argv or not WEIGHTS.is_file() or not TOKENS.is_file():
        build_inputs()
    repo = harness.repo_at(REPO, COMMIT, FILES)
    py = harness.venv("seekr", REQUIREMENTS)
    out = harness.run_in(py, "seekr", {
        "repo": str(repo), "weights": str(WEIGHTS), "tokens": str(TOKENS), "config": CONFIG, "budgets": BUDGETS,
        "budget_grid": BUDGET_GRID, "query_budgets": QUERY_BUDGETS, "batch_size": BATCH, "replay_task_items": 8,
        "seed": SEED,
        "schedules": SCHEDULES, "buffer_sizes": BUFFER_SIZES})
    harness.write_golden(
        "seekr", {"repo": REPO, "commit": COMMIT, "packages": REQUIREMENTS, "script": "seekr.py",
                  "config": CONFIG, "special": SPECIAL, "budgets": BUDGETS, "batch_size": BATCH,
                  "files": ["training/seekr.py:244-307 (attn_grad_hook, get_replay_logits_and_attns: sensitivity, "
                            "teacher logits and maps)",
                            "training/seekr.py:310-358 (get_replay_attns: maps before the task, query rows)",
                            "training/seekr.py:361-365 (get_replay_attn_diff: forgettability)",
                            "training/seekr.py:368-388 (select_layer_head), 468 (cumulative importance)",
                            "training/seekr.py:137-144 (logit KD), 173-238 (train_one_task: schedule, replay step)",
                            "training/seekr.py:86-124 (get_dataset: buffer size, padding to a multiple of 8)",
                            "utils/llama_flash_att.py:253-282 (attn_distill_budget2_forward), 222-250 (query "
                            "budget 0), 285-382 (attn_grad_forward), 384-398 (attn_output_forward), 410-431 (mask)",
                            "data/data_collator.py (DataCollator, DistillAttn2DataCollator: left padding, labels)"]},
        [WEIGHTS, TOKENS],
        ["deepspeed is not installed: a stand-in module gives the names training/seekr.py and utils/utils.py "
         "import; the DeepSpeed engine is a stand-in whose backward() is loss.backward() and whose step() zeroes the "
         "gradients without updating (so every replay step sees the same weights), and whose module is the model.",
         "flash-attn has no CPU build: flash_attn_varlen_qkvpacked_func, unpad_input and pad_input are computed "
         "plainly (causal softmax within each sequence's valid tokens); they serve only the layers that are not "
         "distilled in a replay step, and the new-task steps.",
         "datasets is not installed (data/raw_datasets.py imports it; nothing calls it); create_prompt_dataset is "
         "replaced by a PromptDataset of the input items, and the tokenizer by one that reads token ids written out "
         "as text, so the reference's DataCollator pads, adds BOS/EOS and masks labels itself.",
         "torch.distributed is a one-process gloo group on CPU (DistributedSampler and dist.barrier need one).",
         "train_one_task's training between the maps before a task and after it is replaced by loading the next "
         "weight set (A before the task 'equal', B after it; B before 'mixed', C after it; D while the new task "
         "trains), as main() itself loads a saved model for tasks it skips (load_task_model).",
         "main()'s loop body (training/seekr.py:451-477) is followed step by step for two tasks; the importance "
         "accumulates over both, as attn_ipt does.",
         "torch.manual_seed(seed + task) before get_replay_attns: its query rows come from torch.randperm; the "
         "golden records the rows drawn, and headwise is run on the same rows.",
         "torch 2.13.0 (CPU) and transformers 4.31.0 without the repository's other pins (deepspeed 0.12.6, "
         "datasets 2.14.7, flash-attn), which are not needed to run these functions on CPU."],
        out)


if __name__ == "__main__":
    main()
