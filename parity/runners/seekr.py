"""Runs jinghan1he/SEEKR's training/seekr.py functions in their venv (see parity/seekr.py for the adaptations).

stdin: JSON {repo, weights, tokens, config, budgets, query_budgets, batch_size, schedules, buffer_sizes, seed};
stdout: one JSON line. Each SEEKR function runs unchanged, in the order of its main() (training/seekr.py:449-477),
on a tiny LLaMA whose weights stand for the model before a task, after it, and later in training.
"""

import argparse
import importlib.machinery
import importlib.util
import json
import sys
import tempfile
import types

import torch
import torch.distributed as dist
import torch.nn.functional as F
from common import argparse_defaults

payload = json.loads(sys.stdin.read())
REPO = payload["repo"]


def stand_in(name: str, **attrs) -> types.ModuleType:
    """A module the reference imports but the runner never calls into (or calls only as below)."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


# flash-attn has no CPU build: its three functions, computed plainly (causal softmax within each unpadded sequence).
def varlen_attention(qkv, cu_seqlens, max_s, dropout_p, softmax_scale=None, causal=False):
    out = []
    for s, e in zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist()):
        q, k, v = (t.transpose(0, 1) for t in qkv[s:e].unbind(1))  # [heads, n, dim]
        out.append(F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=softmax_scale).transpose(0, 1))
    return torch.cat(out)


def unpad_input(x, mask):
    lengths = mask.sum(-1, dtype=torch.int32)
    indices = torch.nonzero(mask.flatten(), as_tuple=False).flatten()
    cu = F.pad(torch.cumsum(lengths, 0, dtype=torch.int32), (1, 0))
    return x.flatten(0, 1)[indices], indices, cu, int(lengths.max())


def pad_input(x, indices, batch, seqlen):
    out = x.new_zeros(batch * seqlen, *x.shape[1:])
    out[indices] = x
    return out.view(batch, seqlen, *x.shape[1:])


stand_in("flash_attn")
stand_in("flash_attn.flash_attn_interface", flash_attn_varlen_qkvpacked_func=varlen_attention)
stand_in("flash_attn.bert_padding", unpad_input=unpad_input, pad_input=pad_input)
stand_in("deepspeed", add_config_arguments=lambda parser: parser)
stand_in("deepspeed.runtime")
stand_in("deepspeed.runtime.zero")
stand_in("deepspeed.runtime.zero.partition_parameters", ZeroParamStatus=None)
stand_in("datasets", load_dataset=None, load_from_disk=None)

dist.init_process_group("gloo", init_method=f"file://{tempfile.mkdtemp()}/pg", rank=0, world_size=1)
spec = importlib.util.spec_from_file_location("seekr_reference", f"{REPO}/training/seekr.py")
seekr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seekr)  # appends the repository root to sys.path itself (training/seekr.py:23)
from data.data_utils import PromptDataset  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

tokens = json.load(open(payload["tokens"]))
special = tokens["special"]
weights = load_file(payload["weights"])
cfg = payload["config"]
model = LlamaForCausalLM(LlamaConfig(
    vocab_size=cfg["vocab"], hidden_size=cfg["hidden"], intermediate_size=cfg["intermediate"],
    num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"], num_key_value_heads=cfg["heads"],
    pad_token_id=special["pad"], bos_token_id=special["bos"], eos_token_id=special["eos"]))


def load(name: str) -> None:
    state = {k[len(name) + 1:]: v for k, v in weights.items() if k.startswith(name + ".")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("rotary_emb" in k for k in missing), (missing, unexpected)


class Tokenizer:
    """The collator's tokenizer: the texts are token ids written out, so tokenizing reads them back."""

    pad_token_id, bos_token_id, eos_token_id = special["pad"], special["bos"], special["eos"]
    vocab_size = cfg["vocab"]
    padding_side = truncation_side = "left"

    def __call__(self, text, **kwargs):
        ids = [int(t) for t in text.split()]
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}


class Engine:
    """What seekr.py asks of its DeepSpeed engine: module, forward, backward (no optimizer step is taken, so every
    replay step sees the same weights), and a record of each backward: its loss and whether it was a replay step."""

    def __init__(self, module):
        self.module, self.steps, self.pending = module, [], None

    def __call__(self, **kwargs):
        out = self.module(**kwargs)
        self.last_loss = out.loss
        return out

    def train(self):
        self.module.train()

    def backward(self, loss):
        loss.backward()
        if self.pending is not None:
            self.steps.append({"kind": "replay", "loss": loss.item(), "ce": self.last_loss.item(), **self.pending})
        else:
            self.steps.append({"kind": "task"})
        self.pending = None

    def step(self):
        self.module.zero_grad(set_to_none=True)


engine = Engine(model)
tokenizer = Tokenizer()
kd_reference = seekr.cal_replay_logits_distill_loss
distill_layers = {}


def recording(replace):
    def replace_and_record(module, teacher_attns, select_heads, *rest):
        distill_layers["layers"] = sorted({l for sh in select_heads for l in sh})
        return replace(module, teacher_attns, select_heads, *rest)
    return replace_and_record


def kd_recorded(logits, labels, teacher_logits):
    """training/seekr.py:210-213 reads the KD and then the attention losses; both are recorded for the step."""
    kd = kd_reference(logits, labels, teacher_logits)
    attn = [model.model.layers[l].self_attn.loss_attn_distill for l in distill_layers["layers"]]
    engine.pending = {"kd": kd.item(), "attn": (sum(attn) / len(attn)).item(), "layers": distill_layers["layers"]}
    return kd


seekr.cal_replay_logits_distill_loss = kd_recorded
seekr.replace_llama_distill_attn = recording(seekr.replace_llama_distill_attn)
seekr.replace_llama_distill_attn_qb = recording(seekr.replace_llama_distill_attn_qb)


def text(ids):
    return " ".join(map(str, ids))


def task_loaders(args, items, task, ratio=None):
    """seekr.get_dataset on these items (create_prompt_dataset reads TRACE from disk; here it is handed them), with
    a replay ratio of `ratio` (by default the whole list: the list is the buffer)."""
    data = PromptDataset([text(i["prompt"]) + " " for i in items], [text(i["answer"]) for i in items])
    seekr.create_prompt_dataset = lambda *a, **k: (data, None, None)
    args.past_task_ratio = len(items) if ratio is None else ratio
    return seekr.get_dataset(args, task, tokenizer)


def make_args(query_budget, **extra):
    args = argparse.Namespace(
        global_rank=0, local_rank=0, target_layers=list(range(cfg["layers"])), output_dir=tempfile.mkdtemp(),
        data_path="", data_output_path="", seed=payload["seed"], num_workers=0, max_prompt_len=512, max_ans_len=512,
        per_device_train_batch_size=payload["batch_size"], past_task_ratio=0.01, replay_cycle=0,
        logits_distill_weight=0.5, attns_distill_weight=1e3, attn_layer_budget=payload["budgets"]["layers"],
        attn_head_budget=payload["budgets"]["heads"], attn_query_budget=query_budget)
    args.__dict__.update(extra)
    return args


def importance_run(query_budget):
    """Tasks "equal" (weights A -> B) and "mixed" (B -> C), as main()'s loop body, then a task "new" trained with
    their replay on weights D: the replay steps' losses."""
    device = torch.device("cpu")
    args = make_args(query_budget)
    attn_ipt = torch.zeros(cfg["layers"], cfg["heads"])
    distill, tasks = {}, []
    for t, (name, before, after) in enumerate([("equal", "A", "B"), ("mixed", "B", "C")]):
        items = tokens["buffers"][name]
        _, replay_loader = task_loaders(args, items, name)
        batch = next(iter(replay_loader))
        load(before)
        torch.manual_seed(payload["seed"] + t)  # the query draws (torch.randperm) of get_replay_attns
        attn_queries = seekr.get_replay_attns(args, replay_loader, engine, name, device)
        drawn = [q.clone() for q in attn_queries]
        load(after)
        replay_logits, replay_attns_after, new_attn_grads, attn_queries = seekr.get_replay_logits_and_attns(
            args, replay_loader, engine, attn_queries, name, device)
        engine.step()
        new_attn_diffs = seekr.get_replay_attn_diff(args, replay_attns_after)
        attn_ipt += new_attn_grads * new_attn_diffs  # training/seekr.py:468
        select_heads = seekr.select_layer_head(args, attn_ipt)
        distill[name] = seekr.DistillAttnBudget2PromptDataset(
            replay_loader.dataset, target_layers=args.target_layers, attn_query=attn_queries,
            select_heads=select_heads, teacher_logits=replay_logits,
            all_teacher_attns=tuple(attn for attn in replay_attns_after.transpose(0, 1)))
        total = batch["input_ids"].shape[1]
        lengths = batch["attention_mask"].sum(1).tolist()
        tasks.append({
            "task": name, "padded_length": total, "lengths": lengths,
            "input_ids": batch["input_ids"].tolist(), "labels": batch["labels"].tolist(),
            # rows in each sample's own (unpadded) coordinates; None: every row of the padded square
            "queries": None if query_budget == 0 else [(q[0] - (total - n)).tolist() for q, n in zip(drawn, lengths)],
            "sensitivity": new_attn_grads.tolist(), "forgettability": new_attn_diffs.tolist(),
            "importance": attn_ipt.tolist(),
            "heads": {str(l): h.tolist() for l, h in select_heads.items()},
            "selections": {f"{lb},{hb}": {str(l): h.tolist() for l, h in seekr.select_layer_head(
                argparse.Namespace(**{**vars(args), "attn_layer_budget": lb, "attn_head_budget": hb}),
                attn_ipt).items()} for lb, hb in payload["budget_grid"]}})
    load("D")
    replay_loader = seekr.get_replay_dataloader(args, distill, tokenizer)
    order = list(iter(replay_loader.sampler))
    train_loader, _ = task_loaders(args, tokens["task"][:payload["replay_task_items"]], "new", 1)
    engine.steps = []
    seekr.train_one_task(args, train_loader, replay_loader, 1, engine, device)
    return {"query_budget": query_budget, "tasks": tasks, "replay_order": order,
            "replay_steps": [s for s in engine.steps if s["kind"] == "replay"]}


def schedules():
    """train_one_task's interleaving of replay and task micro-steps (training/seekr.py:175-198), on the replay
    loader of the equal task's buffer."""
    out = []
    for case in payload["schedules"]:
        args = make_args(0, replay_cycle=case["replay_cycle"], per_device_train_batch_size=case["batch_size"])
        _, replay_loader = task_loaders(args, tokens["buffers"]["equal"][:case["buffer"]], "old")
        load("A")
        queries = seekr.get_replay_attns(args, replay_loader, engine, "old", torch.device("cpu"))
        logits, attns, _, queries = seekr.get_replay_logits_and_attns(args, replay_loader, engine, queries, "old",
                                                                      torch.device("cpu"))
        heads = seekr.select_layer_head(args, torch.rand(cfg["layers"], cfg["heads"]))
        distill = {"old": seekr.DistillAttnBudget2PromptDataset(
            replay_loader.dataset, target_layers=args.target_layers, attn_query=queries, select_heads=heads,
            teacher_logits=logits, all_teacher_attns=tuple(a for a in attns.transpose(0, 1)))}
        train_loader, _ = task_loaders(args, tokens["task"][:case["task"]], "new", 1)
        engine.steps = []
        seekr.train_one_task(args, train_loader, seekr.get_replay_dataloader(args, distill, tokenizer), 1, engine,
                             torch.device("cpu"))
        out.append(case | {"kinds": [s["kind"] for s in engine.steps]})
    return out


def buffer_sizes():
    """get_dataset's buffer (training/seekr.py:95-98, 119-123) for a task of N items at replay ratio r."""
    out = []
    for n, ratio in payload["buffer_sizes"]:
        args = make_args(0)
        items = [{"prompt": [3], "answer": [4]}] * n
        try:
            _, loader = task_loaders(args, items, "sizes", ratio)
            out.append({"items": n, "ratio": ratio, "size": len(loader.dataset)})
        except Exception as error:  # the reference's own failure, recorded
            out.append({"items": n, "ratio": ratio, "size": None, "error": f"{type(error).__name__}: {error}"})
    return out


def script_values():
    values = {}
    for line in open(f"{REPO}/scripts/exp_seq_seekr.sh"):
        name, eq, value = line.strip().partition("=")
        if eq and name in ("replay_ratio", "attns_distill_weight", "attn_layer_budget", "attn_head_budget",
                           "attn_query_budget"):
            values[name] = float(value)
    return values


result = {"runs": [importance_run(q) for q in payload["query_budgets"]], "schedules": schedules(),
          "buffer_sizes": buffer_sizes(),
          "defaults": {k: v for k, v in argparse_defaults(f"{REPO}/training/seekr.py").items()
                       if k in ("past_task_ratio", "replay_cycle", "logits_distill_weight", "attns_distill_weight",
                                "attn_layer_budget", "attn_head_budget", "attn_query_budget")},
          "script": script_values()}
print(json.dumps(result))
