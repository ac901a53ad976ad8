"""`--preset paper`: every setting of the reference's training script, pinned to it, and what it brings (an
effective batch through accumulation, a learning-rate schedule).

The reference is jinghan1he/SEEKR @ 22fe447: scripts/exp_seq_seekr.sh (sh:LINE below) and training/seekr.py
(py:LINE), utils/ds_utils.py (ds:LINE), inference/infer_single.py (infer:LINE)."""

import math

import pytest
import torch

from headwise.cl.config import CLConfig
from headwise.cl.schedule import lr_factor
from headwise.errors import HeadwiseError

REFERENCE = {
    "lora": False,  # sh:61 trains every weight (no PEFT anywhere in training/seekr.py)
    "lr": 1e-5,  # sh:68 --learning_rate 1e-5
    "lr_schedule": "constant",  # py:132 get_constant_schedule_with_warmup (sh:72's --lr_scheduler_type is unused)
    "warmup_steps": 0,  # sh:73 --num_warmup_steps 0
    "epochs": 5,  # sh:21 epochs=5,5,5,5,5,5,10,5 (TRACE order 1; sh:28 order 2 and sh:35,42 SuperNI differ)
    "batch_size": 16,  # sh:65 --per_device_train_batch_size 2 on sh:61's 8 GPUs, per micro-step
    "effective_batch": 128,  # sh:71 --gradient_accumulation_steps 8: 2 x 8 x 8 (py:407 train_batch_size)
    "betas": (0.9, 0.95),  # py:130 AdamW(..., betas=(0.9, 0.95))
    "weight_decay": 0.0,  # sh:69 --weight_decay 0.
    "clip": 1.0,  # ds:42 gradient_clipping 1.0
    "seed": 1234,  # sh:74 --seed 1234
    "max_len": 1536,  # sh:66-67 --max_prompt_len 1024 + --max_ans_len 512
    "replay": 0.01,  # sh:49 replay_ratio=0.01
    "kd_weight": 0.5,  # py:75 --logits_distill_weight default 0.5 (the script does not pass it)
    "lam": 1000.0,  # sh:50 attns_distill_weight=1e3
    "layer_budget": 0.75,  # sh:52 attn_layer_budget=24 of LLaMA-2-7B's 32 layers
    "head_budget": 0.125,  # sh:53 attn_head_budget=128 of its 32 x 32 = 1024 heads
    "query_budget": 0,  # sh:54 attn_query_budget=0: every query row
    "logit_topk": 0,  # py:290 keeps the full logits of each replay sample
    "replay_cycle": None,  # py:74 --replay_cycle default 0: the automatic cycle
    "max_new_tokens": 512,  # infer:74 max_new_tokens=args.max_ans_len, sh:100 512
    "eval_batch_size": 16,  # sh:98 --inference_batch 16
}


def test_the_paper_preset_is_the_reference_script():
    assert {k: v for k, v in CLConfig.preset("paper").items()} == REFERENCE
    cfg = CLConfig.resolve("paper")
    assert cfg.grad_accum == 8 and cfg.batch_size * cfg.grad_accum == 128
    # paper-faithful adds the original code's choices (docs/seekr.md#faithful-mode) to the script's settings.
    both = CLConfig.resolve("paper-faithful")
    assert both.replay_sampling == "first" and both.kd_positions == "own-label" and both.lr == 1e-5


def test_an_effective_batch_is_reached_through_accumulation():
    assert CLConfig.resolve("paper", {"batch_size": 2}).grad_accum == 64  # one CPU process, 2 sequences a step
    assert CLConfig(batch_size=4, effective_batch=32).grad_accum == 8
    assert CLConfig(batch_size=4, grad_accum=8, effective_batch=32).grad_accum == 8
    assert CLConfig(batch_size=4, grad_accum=3).effective_batch == 0  # 0: no effective batch asked for
    with pytest.raises(HeadwiseError, match="not a whole number of micro-batches"):
        CLConfig(batch_size=16, effective_batch=100)
    with pytest.raises(HeadwiseError, match="not --effective-batch 128; give the effective batch or the accumulation"):
        CLConfig.resolve("paper", {"grad_accum": 4})
    # Recorded and read back (a resume), the derived accumulation agrees with itself.
    cfg = CLConfig.resolve("paper", {"batch_size": 2})
    assert CLConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("warmup", [0, 3])
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_lr_schedule_follows_transformers(schedule, warmup):
    """The learning rate of each optimizer step is the one transformers' scheduler gives (the reference's
    get_constant_schedule_with_warmup; get_cosine_schedule_with_warmup for the cosine it names)."""
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    total = 11
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = (get_constant_schedule_with_warmup(opt, warmup) if schedule == "constant" else
             get_cosine_schedule_with_warmup(opt, warmup, total))
    want = []
    for _ in range(total):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    got = [lr_factor(schedule, i, total, warmup) for i in range(total)]
    assert got == pytest.approx(want, abs=1e-12)
    if schedule == "cosine":
        assert got[-1] < 0.05 and not math.isclose(got[warmup + 1], 1.0)


def test_a_run_steps_with_the_scheduled_learning_rate(tmp_path, trace_dir, tok):
    """Each optimizer step logs the rate it took: cosine over the task's optimizer steps, restarting each task."""
    from headwise.cl import losslog

    from test_trainer import run_cl

    run_cl(tmp_path / "r", trace_dir, tok, method="seqft", epochs=2, batch_size=2, grad_accum=2,
           lr_schedule="cosine", lr=1e-3)
    records = [r for r in losslog.read(tmp_path / "r" / "losses.jsonl") if r.get("lr") is not None]
    per_task = {t: [r["lr"] for r in records if r["task"] == t] for t in ("a", "b")}
    updates = 4  # 8 items a task, batch 2: 4 micro-steps an epoch, 2 epochs, accumulating 2
    for rates in per_task.values():
        assert rates == pytest.approx([1e-3 * lr_factor("cosine", i, updates) for i in range(updates)])


def test_op_standard_error_from_the_item_scores(tmp_path, trace_dir, tok):
    """SE(OP) = sqrt(sum_i s_i^2 / n_i) / T over the last row's per-item scores (sample variances)."""
    from headwise.cl.metrics import op_standard_error

    from test_trainer import run_cl

    assert op_standard_error([[1, 0, 1, 0], [1, 1, 1, 1]]) == pytest.approx(math.sqrt((1 / 3) / 4) / 2)
    assert op_standard_error([[1.0], [0.0, 1.0]]) is None
    res = run_cl(tmp_path / "r", trace_dir, tok, method="seqft", epochs=1)
    import json

    items = json.loads((tmp_path / "r" / "state.json").read_text())["item_scores"]["after b"]
    assert [sum(s) / len(s) for s in items] == pytest.approx(res["matrix"][-1])
    assert res["op_se"] == pytest.approx(op_standard_error(items))


def test_full_fine_tuning_of_half_precision_weights_warns(tmp_path, trace_dir, tok):
    """The reference trained float32 master weights under DeepSpeed's bf16; pure bf16 AdamW at lr 1e-5 loses most
    updates to rounding, so a run on half-precision weights says so."""
    from headwise.cl.data import load_trace
    from headwise.cl.trainer import Continual
    from headwise.runs import Run
    from headwise.testing import tiny_model

    for dtype, warned in ((torch.bfloat16, True), (torch.float32, False)):
        said = []
        cfg = CLConfig(batch_size=2)
        Continual(tiny_model("llama").to(dtype), tok, load_trace(trace_dir), cfg,
                  Run(tmp_path / str(dtype), "cl run", {}, cfg), log=said.append, progress=False)
        assert any("full fine-tuning of half-precision weights: AdamW steps at lr 1e-05" in s for s in said) == warned
