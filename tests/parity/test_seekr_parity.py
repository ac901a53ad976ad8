"""SEEKR against jinghan1he/SEEKR @ 22fe447 (golden from parity/seekr.py): one test per row of docs/parity.md.

headwise runs the same tiny LLaMA (parity/inputs/seekr_llama.safetensors: weights A before the task "equal", B
after it and before "mixed", C after "mixed", D the student of the replay steps) on the same buffers
(parity/inputs/seekr_tokens.json), with the query rows the reference drew. The reference lines are in the golden
("files") and in each test's docstring.
"""

import json
import math
import random

import pytest
import torch
from safetensors.torch import load_file

from headwise.cl import buffer as buffer_module
from headwise.cl.config import CLConfig
from headwise.cl.importance import (buffer_length, capture_all_maps, forgettability, normalize_layers, query_rows,
                                    select_heads, sensitivity_and_maps)
from headwise.cl.losses import attention_kl, kd_positions, logit_kd
from headwise.cl.schedule import epoch_steps
from headwise.errors import HeadwiseError
from parity.harness import INPUTS, load_golden

TOL = 1e-5  # relative, float32 in another order (eager vs the reference's matmuls, RoPE at other positions)


@pytest.fixture(scope="module")
def golden():
    return load_golden("seekr", "seekr.py")


@pytest.fixture(scope="module")
def models(golden):
    return load_models(golden)


@pytest.fixture(scope="module")
def buffers():
    return load_buffers()


@pytest.fixture(scope="module")
def faithful(golden, models, buffers):
    """headwise's importance under the faithful fields, for each of the reference's runs (computed once)."""
    budgets = golden["reference"]["budgets"]
    return [importance(models, buffers, run, True, budgets=(budgets["layers"], budgets["heads"]))
            for run in golden["outputs"]["runs"]]


def load_models(golden) -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM

    c, special = golden["reference"]["config"], golden["reference"]["special"]
    weights = load_file(str(INPUTS / "seekr_llama.safetensors"))
    out = {}
    for name in "ABCD":
        config = LlamaConfig(vocab_size=c["vocab"], hidden_size=c["hidden"], intermediate_size=c["intermediate"],
                             num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
                             num_key_value_heads=c["heads"], pad_token_id=special["pad"],
                             bos_token_id=special["bos"], eos_token_id=special["eos"])
        model = LlamaForCausalLM(config).eval()
        state = {k[2:]: v for k, v in weights.items() if k.startswith(name + ".")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and not missing, (missing, unexpected)
        out[name] = model
    return out


def load_buffers() -> dict:
    """Each buffer's samples as headwise encodes them: BOS prompt answer EOS, labels on answer and EOS."""
    tokens = json.loads((INPUTS / "seekr_tokens.json").read_text())
    s = tokens["special"]
    return {name: [([s["bos"], *i["prompt"], *i["answer"], s["eos"]],
                    [-100] * (1 + len(i["prompt"])) + [*i["answer"], s["eos"]]) for i in items]
            for name, items in tokens["buffers"].items()}


def importance(models, buffers, run, faithful, padding=None, budgets=(2, 4)):
    """headwise's S, F, cumulative I and selection (at budgets: layers, heads) over the reference's two tasks, on
    its query rows. faithful: `sensitivity_entries="all"` and `importance_padding="buffer"` (padding overrides the
    latter)."""
    padding = padding if padding is not None else ("buffer" if faithful else "none")
    imp, out = None, []
    for task, before, after in zip(run["tasks"], "AB", "BC"):
        samples = buffers[task["task"]]
        rows = task["queries"] or [None] * len(samples)
        padded = buffer_length(len(ids) for ids, _ in samples) if padding == "buffer" else None
        sens = forget = 0
        for (ids, labels), r in zip(samples, rows):
            s, after_maps, _ = sensitivity_and_maps(models[after], ids, labels, r, not faithful, padded=padded)
            f = forgettability(capture_all_maps(models[before], ids, r), after_maps, padded=padded,
                               every_row=run["query_budget"] == 0)
            sens, forget = sens + s / len(samples), forget + f / len(samples)
        imp = (0 if imp is None else imp) + normalize_layers(sens) * forget
        out.append({"sensitivity": normalize_layers(sens), "forgettability": forget, "importance": imp.clone(),
                    "heads": select_heads(imp, *budgets)})
    return out


def rel(ours: torch.Tensor, ref) -> float:
    ref = torch.tensor(ref, dtype=torch.float64)
    return ((ours.double() - ref).abs().max() / ref.abs().max()).item()


def test_collator_reads_the_samples_as_headwise_encodes_them(golden, buffers):
    """data/data_collator.py DataCollator.decoder_call: BOS prompt answer EOS, left-padded to the longest sample
    rounded up to a multiple of 8 (training/seekr.py:104-110), labels on the answer and EOS."""
    for task in golden["outputs"]["runs"][0]["tasks"]:
        samples = buffers[task["task"]]
        assert task["padded_length"] == buffer_length(len(ids) for ids, _ in samples)
        for (ids, labels), row, lab, n in zip(samples, task["input_ids"], task["labels"], task["lengths"]):
            assert (row[-n:], lab[-n:], n) == (ids, labels, len(ids))


@pytest.mark.parametrize("run", [0, 1], ids=["all-rows", "query-budget-10"])
def test_faithful_importance_and_selection_match_the_reference(golden, faithful, run):
    """Under the faithful preset's fields, on the equal and the mixed (padded) buffers: sensitivity
    (training/seekr.py:244-245, 292-293), forgettability (361-365), cumulative importance (468) and the selected
    heads (368-388) of the reference; the importance within TOL relative to its largest entry."""
    ref = golden["outputs"]["runs"][run]
    for ours, task in zip(faithful[run], ref["tasks"]):
        for key in ("sensitivity", "forgettability", "importance"):
            assert rel(ours[key], task[key]) < TOL, (task["task"], key)
        assert named(ours["heads"]) == task["heads"], task["task"]
        for pair, heads in task["selections"].items():
            assert named(select_heads(ours["importance"], *map(int, pair.split(",")))) == heads, (task["task"], pair)


def named(selection: dict) -> dict:
    return {str(l): h for l, h in selection.items()}


def test_default_differs_only_where_documented(golden, models, buffers):
    """The default (valid entries, each sample at its own length) differs from the reference; without the padding
    field the faithful sensitivity and forgettability still match on the unpadded buffer (docs/parity.md)."""
    ref = golden["outputs"]["runs"][0]
    unpadded = importance(models, buffers, ref, faithful=True, padding="none")
    assert rel(unpadded[0]["forgettability"], ref["tasks"][0]["forgettability"]) < TOL  # equal lengths: no pad
    assert rel(unpadded[0]["sensitivity"], ref["tasks"][0]["sensitivity"]) < TOL
    assert rel(unpadded[1]["forgettability"], ref["tasks"][1]["forgettability"]) > 0.1  # divided by own lengths
    default = importance(models, buffers, ref, faithful=False)
    assert rel(default[0]["sensitivity"], ref["tasks"][0]["sensitivity"]) > 1e-3  # valid entries only


def test_budgets_and_query_rows(golden):
    """select_layer_head takes counts (training/seekr.py:372-376); headwise's fractions of the 32 x 32 heads of
    LLaMA-2-7B give the script's 24 and 128 (scripts/exp_seq_seekr.sh). The query budget draws that many rows per
    sample, with replacement when the sample is shorter (training/seekr.py:329-332)."""
    from headwise.cl.importance import budget_count

    script = golden["outputs"]["script"]
    paper = CLConfig.resolve("paper", {})
    assert budget_count(paper.layer_budget, 32, "layer") == script["attn_layer_budget"] == 24
    assert budget_count(paper.head_budget, 32 * 32, "head") == script["attn_head_budget"] == 128
    assert paper.query_budget == script["attn_query_budget"] == 0
    for task, lengths in ((t, t["lengths"]) for t in golden["outputs"]["runs"][1]["tasks"]):
        for rows, n in zip(task["queries"], lengths):
            ours = query_rows(n, 10, random.Random(0), resample=True)
            assert len(rows) == len(ours) == 10 and all(0 <= q < n for q in rows)
            assert (len(set(rows)) == 10) == (n >= 10) == (len(set(ours)) == 10)


@pytest.mark.parametrize("run", [0, 1], ids=["all-rows", "query-budget-10"])
def test_replay_step_loss_matches(golden, models, buffers, faithful, run):
    """One replay step (training/seekr.py:192-216): CE, logit KD on the positions whose own label is an answer
    token (137-144), attention KL on the selected heads (utils/llama_flash_att.py:222-282), and
    (1 - 0.5) CE + 0.5 KD + 1000 KL; the teachers are B (task "equal") and C ("mixed"), the student D."""
    ref, selected = golden["outputs"]["runs"][run], faithful[run]
    teachers_of, concat = {}, []
    for task, sel, teacher in zip(ref["tasks"], selected, "BC"):
        rows = task["queries"] or [None] * len(buffers[task["task"]])
        for (ids, labels), r in zip(buffers[task["task"]], rows):
            _, maps, logits = sensitivity_and_maps(models[teacher], ids, labels, r, False)
            pos = kd_positions(torch.tensor([labels]), shifted=False)[0]
            teachers_of[len(concat)] = {"heads": sel["heads"], "maps": {l: maps[l, h] for l, h in sel["heads"].items()},
                                        "queries": r, "logprobs": torch.log_softmax(logits[pos], -1)}
            concat.append((ids, labels))
    from headwise.cl.data import collate
    from headwise.heads import attention_maps

    batch_size = golden["reference"]["batch_size"]
    order = ref["replay_order"]
    for step, want in enumerate(ref["replay_steps"]):
        refs = order[step * batch_size:(step + 1) * batch_size]
        rows = [concat[i] for i in refs]
        teachers = [teachers_of[i] for i in refs]
        batch = collate(rows, pad=0)
        heads = {}
        for t in teachers:
            for l, hs in t["heads"].items():
                heads[l] = sorted(set(heads.get(l, [])) | set(hs))
        with torch.no_grad(), attention_maps(models["D"], heads) as maps:
            out = models["D"](**batch, use_cache=False)
        kd = logit_kd(out.logits, kd_positions(batch["labels"], shifted=False), teachers)
        kl = attention_kl(maps.maps, heads, teachers, [len(ids) for ids, _ in rows])
        loss = 0.5 * out.loss + 0.5 * kd + 1000 * kl
        assert sorted(heads) == want["layers"]
        for ours, key in ((out.loss, "ce"), (kd, "kd"), (kl, "attn"), (loss, "loss")):
            assert math.isclose(ours.item(), want[key], rel_tol=TOL), (step, key, ours.item(), want[key])


def test_replay_schedule(golden):
    """train_one_task (training/seekr.py:175-198): a replay micro-step before task step k when (k + 1) % cycle
    == 0, cycle = --replay_cycle or floor(task batches / replay batches); an automatic cycle of 0 never replays
    (`auto_cycle="truncate"`, the faithful preset)."""
    for case in golden["outputs"]["schedules"]:
        cycle = case["replay_cycle"] or None
        steps = epoch_steps(case["task"], case["buffer"], case["batch_size"], 0, 1, 0, truncate_cycle=True, cycle=cycle)
        assert [kind for kind, _ in steps] == case["kinds"], case


def test_buffer_sizes(golden):
    """get_dataset (training/seekr.py:95): int(N r) for r < 1, int(r) otherwise; an empty buffer makes the replay
    DataLoader fail (batch_size 0), which headwise refuses under `buffer_sizes="truncate"` (the faithful preset)."""
    for case in golden["outputs"]["buffer_sizes"]:
        if case["size"] is None:
            assert "batch_size=0" in case["error"]
            with pytest.raises(HeadwiseError):
                buffer_module.buffer_size(case["ratio"], case["items"], truncate=True)
        else:
            assert buffer_module.buffer_size(case["ratio"], case["items"], truncate=True) == case["size"], case


def test_defaults(golden):
    """training/seekr.py:73-79 argparse defaults and scripts/exp_seq_seekr.sh: replay ratio, KD weight, attention
    weight as headwise's defaults; the automatic cycle (--replay_cycle 0) is headwise's None."""
    d, cfg = golden["outputs"]["defaults"], CLConfig()
    assert (cfg.replay, cfg.kd_weight, cfg.lam) == (d["past_task_ratio"], d["logits_distill_weight"],
                                                     d["attns_distill_weight"])
    assert d["replay_cycle"] == 0 and cfg.replay_cycle is None
