import json

import pytest
import torch
from safetensors import safe_open

from headwise.cl import losslog
from headwise.cl.config import CLConfig
from headwise.cl.data import load_trace
from headwise.cl.losses import attention_kl
from headwise.cl.trainer import Continual
from headwise.heads import attention_maps
from headwise.runs import Run
from headwise.testing import text_batch, tiny_model

FAST = dict(batch_size=2, lr=1e-3, epochs=2, replay=0.25, max_new_tokens=2, layer_budget=1, head_budget=2,
            query_budget=4, logit_topk=8, checkpoint_every=2, seed=3)


def run_cl(tmp, trace_dir, tok, on_step=None, **kw):
    cfg = CLConfig(**{**FAST, **kw})
    tasks = load_trace(trace_dir)
    run = Run(tmp, "cl run", cfg.to_dict())
    return Continual(tiny_model("llama"), tok, tasks, cfg, run, log=lambda s: None).fit(on_step)


def test_attention_kl_equals_a_hand_computation_from_eager_maps():
    ids, mask = text_batch(2, 7, left_pad=2)
    eager = tiny_model("llama", attn_implementation="eager")
    with torch.no_grad():
        ref = eager(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    torch.manual_seed(1)
    lengths = [7, 5]
    teachers = [{"heads": {1: [0, 3]}, "queries": None, "maps": {1: torch.softmax(torch.randn(2, 7, 7), -1).tril()}},
                {"heads": {0: [2], 1: [3]}, "queries": [0, 4],
                 "maps": {0: torch.softmax(torch.randn(1, 2, 5), -1), 1: torch.softmax(torch.randn(1, 2, 5), -1)}}]
    want = 0.0
    for l in (0, 1):
        per_layer = 0.0
        for i, t in enumerate(teachers):
            hs = t["heads"].get(l, [])
            n = lengths[i]
            rows = t["queries"] if t["queries"] is not None else list(range(n))
            terms = []
            for a, h in enumerate(hs):
                for r, q in enumerate(rows):
                    p_t = t["maps"][l][a, r]
                    p_s = ref[l][i, h, 7 - n + q, 7 - n:]
                    terms.append(sum(float(p_t[k] * (torch.log(p_t[k]) - torch.log(p_s[k] + 1e-8)))
                                     for k in range(n) if p_t[k] > 0))
            per_layer += sum(terms) / len(terms) if terms else 0.0
        want += per_layer / 2
    want /= 2
    model = tiny_model("llama")  # sdpa: the maps come from the side branch with gradients
    heads = {0: [2], 1: [0, 3]}
    with attention_maps(model, heads, differentiable=True) as maps:
        model(input_ids=ids, attention_mask=mask)
    got = attention_kl(maps.maps, heads, teachers, lengths)
    assert got.item() == pytest.approx(want, rel=1e-4)
    got.backward()
    assert model.model.layers[1].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_seekr_run_writes_results_teacher_store_and_plots(tmp_path, trace_dir, tok):
    res = run_cl(tmp_path / "run", trace_dir, tok)
    assert res["tasks"] == ["a", "b"] and len(res["matrix"]) == 2 and all(len(r) == 2 for r in res["matrix"])
    assert all(0 <= x <= 1 for r in res["matrix"] for x in r)
    r, base = res["matrix"], res["base"]
    # OP, BWT (both conventions) and FWT from the run's own matrix, by the definitions (seekr.md §7).
    assert res["op"] == pytest.approx((r[1][0] + r[1][1]) / 2)
    assert res["bwt"] == pytest.approx(r[1][0] - r[0][0])
    assert res["bwt_paper"] == pytest.approx((r[1][0] - r[0][0]) / 2)
    assert res["fwt"] == pytest.approx(r[0][1] - base[1])
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["op"] == res["op"] and "env" in on_disk
    assert (tmp_path / "run" / "matrix.png").is_file() and (tmp_path / "run" / "importance.png").is_file()
    assert res["buffer_sizes"] == {"a": 2, "b": 2}
    heads = {int(l): h for l, h in res["heads"]["a"].items()}
    assert len(heads) == 1 and sum(map(len, heads.values())) == 2
    # The store holds only the selected heads at the sampled rows, in float16, and top-k logits.
    path = tmp_path / "run" / "teacher" / "a.safetensors"
    expected = 0
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            t = f.get_tensor(key)
            expected += t.numel() * t.element_size()
            if ".maps." in key:
                assert t.dtype == torch.float16 and t.shape[0] == len(heads[int(key.rsplit(".", 1)[1])])
                assert t.dim() == 2  # packed: only the causal entries of the 4 budgeted query rows
            elif key.endswith("logprobs"):
                assert t.shape[1] == 8
    # The file is the 8-byte header length, the JSON header, then exactly these tensors: nothing else stored.
    header = int.from_bytes(path.read_bytes()[:8], "little")
    assert path.stat().st_size == 8 + header + expected
    assert res["teacher_store_bytes"]["a"] == path.stat().st_size
    from headwise.cl.teacher import TeacherShard

    sample = TeacherShard(path).sample(0)
    for l, hs in heads.items():
        assert sample["maps"][l].shape[:2] == (len(hs), 4)
        assert torch.allclose(sample["maps"][l].float().sum(-1), torch.ones(len(hs), 4), atol=1e-2)
    assert not (tmp_path / "run" / "work" / "a").exists()  # the all-head "before" maps are gone


def test_losses_log_every_micro_step_with_the_replay_parts(tmp_path, trace_dir, tok):
    run_cl(tmp_path / "run", trace_dir, tok, epochs=1)
    lines = losslog.read(tmp_path / "run" / "losses.jsonl")
    # Task a: 4 task steps of 2; task b: 4 task steps and, from its buffer of 2, one replay step before the 4th.
    assert [(r["task"], r["step"], r["kind"]) for r in lines] == \
        [("a", k, "task") for k in range(4)] + [("b", 0, "task"), ("b", 1, "task"), ("b", 2, "task"),
                                                 ("b", 3, "replay"), ("b", 4, "task")]
    for task in ("b",):
        first = next(r["step"] for r in lines if r["task"] == task and r["kind"] == "replay")
        assert any(r["task"] == task and r["kind"] == "task" and r["step"] < first for r in lines)
    replay = [r for r in lines if r["kind"] == "replay"]
    assert all(r["attn"] > 0 for r in replay)
    for r in replay:
        assert r["attn_weighted"] == pytest.approx(1000.0 * r["attn"])
        # What was back-propagated is the paper's sum of the logged parts.
        assert r["loss"] == pytest.approx(0.5 * r["ce"] + 0.5 * r["kd"] + r["attn_weighted"], rel=1e-5)
    assert all(r["grad_norm"] > 0 and r["clipped"] == (r["grad_norm"] > 1.0) for r in lines)
    assert (tmp_path / "run" / "losses.png").is_file()


class Killed(Exception):
    pass


def test_killed_mid_task_and_resumed_gives_the_same_metrics(tmp_path, trace_dir, tok):
    full = run_cl(tmp_path / "full", trace_dir, tok)
    seen = []

    def kill(step, kind):
        seen.append(step)
        if len(seen) == 12:  # task a: 8 steps; task b: replay + 4 task steps per epoch
            raise Killed

    with pytest.raises(Killed):
        run_cl(tmp_path / "killed", trace_dir, tok, on_step=kill)
    state = json.loads((tmp_path / "killed" / "state.json").read_text())
    assert state["done"]["a"] == ["before", "train", "teacher", "eval"] and "train" not in state["done"]["b"]
    progress = torch.load(tmp_path / "killed" / "checkpoint" / "ckpt.pt", weights_only=True)["progress"]
    assert progress == {"task": 1, "epoch": 0, "step": 2}  # resumes mid-task, redoing the lost steps
    resumed = run_cl(tmp_path / "killed", trace_dir, tok)
    assert resumed["matrix"] == full["matrix"]
    assert (resumed["op"], resumed["bwt"], resumed["fwt"]) == (full["op"], full["bwt"], full["fwt"])
    assert resumed["heads"] == full["heads"]
    # Scores of a tiny random model can tie by chance; the trained weights must match too.
    # losses.jsonl: the lines after the last checkpoint were cut on resume, so none is doubled or missing.
    assert losslog.read(tmp_path / "killed" / "losses.jsonl") == losslog.read(tmp_path / "full" / "losses.jsonl")
    w_full = torch.load(tmp_path / "full" / "checkpoint" / "ckpt.pt", weights_only=True)["weights"]
    w_res = torch.load(tmp_path / "killed" / "checkpoint" / "ckpt.pt", weights_only=True)["weights"]
    assert all(torch.equal(w_full[n], w_res[n]) for n in w_full)
    start = tiny_model("llama").state_dict()
    assert any(not torch.equal(start[n], w_full[n]) for n in w_full)


@pytest.mark.parametrize("method", ["seqft", "replay", "derpp"])
def test_baselines_run(tmp_path, trace_dir, tok, method):
    res = run_cl(tmp_path / method, trace_dir, tok, method=method, epochs=1)
    assert res["complete"] and res["heads"] == ({"a": {}, "b": {}} if method == "derpp" else {})
    assert (tmp_path / method / "teacher" / "a.safetensors").is_file() == (method == "derpp")


def test_lora_trains_only_adapters(tmp_path, trace_dir, tok):
    res = run_cl(tmp_path / "lora", trace_dir, tok, lora=True, epochs=1)
    assert res["complete"]
    ck = torch.load(tmp_path / "lora" / "checkpoint" / "ckpt.pt", weights_only=True)
    assert ck["weights"] and all("lora_" in n for n in ck["weights"])


@pytest.mark.parametrize("mode", ["main-only", "all-ranks", "fsdp2", "fsdp2-lora"])
def test_two_processes_match_one(tmp_path, trace_dir, mode):
    """DDP over 2 CPU processes gives the single-process run; `all-ranks` is the path FSDP 2 and ZeRO-3 take
    (every process joins every pass, checkpoints through Accelerate), checked here under DDP; `fsdp2` is FSDP 2
    for real: `accelerate launch --use_fsdp --fsdp_version 2` over gloo, each process holding half the weights
    (with LoRA adapters too, whose evaluation and teacher passes call the sharded transformers model directly)."""
    import subprocess
    import sys
    from pathlib import Path

    script = str(Path(__file__).with_name("tiny_run.py"))
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    lora = ["lora"] if mode.endswith("lora") else []
    one = subprocess.run([sys.executable, script, str(trace_dir), str(tmp_path / "one"), *lora], capture_output=True,
                         text=True, timeout=300, env=env)
    assert one.returncode == 0, one.stderr
    import socket

    with socket.socket() as sock:  # a free port: the default 29500 clashes with other launches on this machine
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = ["--use_fsdp", "--fsdp_version", "2"] if mode.startswith("fsdp2") else ["--multi_gpu"]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", *engine, "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(port)]
    extra = (["all-ranks"] if mode == "all-ranks" else []) + lora
    two = subprocess.run([*launcher, script, str(trace_dir), str(tmp_path / "two"), *extra], capture_output=True,
                         text=True, timeout=300, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    r1 = json.loads((tmp_path / "one" / "results.json").read_text())
    r2 = json.loads((tmp_path / "two" / "results.json").read_text())
    assert (tmp_path / "two" / "world.txt").read_text() == "2"
    assert r2["complete"] and r1["heads"] == r2["heads"]
    assert r1["matrix"] == r2["matrix"]
    # The buffer of 5 at batch 4 ends in a 1-item replay batch: one process had nothing and did an empty step.
    assert r1["buffer_sizes"] == {"a": 5, "b": 5}
    l1, l2 = (losslog.read(tmp_path / d / "losses.jsonl") for d in ("one", "two"))
    assert [(r["task"], r["epoch"], r["step"], r["kind"]) for r in l1] == \
        [(r["task"], r["epoch"], r["step"], r["kind"]) for r in l2]
    for a, b in zip(l1, l2):
        for key in ("loss", "ce", "kd", "attn", "grad_norm"):
            if a.get(key) is not None:
                assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-6), (a, b)
    held = [json.loads((tmp_path / "two" / f"params-{r}.json").read_text()) for r in (0, 1)]
    if mode.startswith("fsdp2"):  # each process holds a shard, together the whole model
        assert all(h["held"] < 0.6 * h["full"] for h in held) and sum(h["held"] for h in held) == held[0]["full"]
    else:
        assert all(h["held"] == h["full"] for h in held)
    w1 = torch.load(tmp_path / "one" / "checkpoint" / "ckpt.pt", weights_only=True)["weights"]
    if mode.startswith("fsdp2"):
        from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

        ckpt = tmp_path / "two" / "checkpoint"
        saved = json.loads((ckpt / "progress.json").read_text())
        dcp_to_torch_save(ckpt / saved["state"], tmp_path / "two.pt")
        w2 = torch.load(tmp_path / "two.pt", weights_only=True)["model"]
    elif mode == "all-ranks":
        from safetensors.torch import load_file

        ckpt = tmp_path / "two" / "checkpoint"
        saved = json.loads((ckpt / "progress.json").read_text())
        assert saved["progress"]["task"] == 1 and [p.name for p in ckpt.glob("state-*")] == [saved["state"]]
        w2 = load_file(str(ckpt / saved["state"] / "model.safetensors"))
    else:
        w2 = torch.load(tmp_path / "two" / "checkpoint" / "ckpt.pt", weights_only=True)["weights"]
    assert max((w1[n] - w2[n]).abs().max().item() for n in w1) < 1e-4


def test_budget_larger_than_the_model_is_refused_before_any_work(tmp_path, trace_dir, tok):
    from headwise.errors import HeadwiseError

    with pytest.raises(HeadwiseError, match="layer budget 5 is larger than the model's 2 layers"):
        run_cl(tmp_path / "r", trace_dir, tok, layer_budget=5)
    assert not (tmp_path / "r" / "state.json").exists()


@pytest.mark.parametrize("masked", [False, True])
def test_sensitivity_equals_gradients_of_eager_attentions(masked):
    from headwise.cl.importance import sensitivity_and_maps

    ids = text_batch(1, 9)[0][0].tolist()
    labels = [-100] * 5 + ids[5:]
    eager = tiny_model("llama", attn_implementation="eager")
    out = eager(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]), output_attentions=True)
    grads = torch.autograd.grad(out.loss, list(out.attentions))
    keep = torch.ones(9, 9, dtype=torch.bool).tril()
    want = torch.stack([(g[0] ** 2)[:, keep].mean(-1) if masked else (g[0] ** 2).mean((-1, -2)) for g in grads])
    model = tiny_model("llama")
    sens, maps, logits = sensitivity_and_maps(model, ids, labels, [2, 7], masked)
    assert torch.allclose(sens, want, rtol=1e-4, atol=1e-12) and sens.abs().sum() > 0
    assert torch.allclose(maps, torch.stack([a[0, :, [2, 7]] for a in out.attentions]).detach(), atol=1e-5)
    assert torch.allclose(logits, out.logits[0].detach(), atol=1e-5)
    assert all(p.grad is None for p in model.parameters())  # no leak into the next optimizer step


def test_accumulation_through_the_accelerator_gives_the_full_batch_step(tmp_path, trace_dir, tok):
    """Gradient accumulation goes through the Accelerator (headwise.distributed): 2 micro-batches of 1 give the
    weights of 1 batch of 2 (the items hold answers of equal length, so the token mean of the batch is the mean of
    the micro-batch means), the optimizer steps every second micro-step and at a task's last one, and only
    those micro-steps log a gradient norm."""
    def final_weights(out, **kw):
        cfg = CLConfig(**{**FAST, "method": "seqft", "epochs": 1, "checkpoint_every": 100, **kw})
        model = tiny_model("llama")
        Continual(model, tok, load_trace(trace_dir), cfg, Run(tmp_path / out, "cl run", {}, cfg),
                  log=lambda s: None, progress=False).fit()
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    whole = final_weights("whole", batch_size=2, grad_accum=1)
    accumulated = final_weights("accumulated", batch_size=1, grad_accum=2)
    one_step_each = final_weights("one", batch_size=1, grad_accum=1)
    assert all(torch.allclose(whole[n], accumulated[n], atol=1e-6) for n in whole)
    assert not all(torch.allclose(whole[n], one_step_each[n], atol=1e-4) for n in whole)  # the test can fail
    records = losslog.read(tmp_path / "accumulated" / "losses.jsonl")
    assert len(records) == 16  # 8 items per task, 2 tasks, batch 1
    assert [r["grad_norm"] is not None for r in records[:8]] == [False, True] * 4

    odd = final_weights("odd", batch_size=1, grad_accum=3)  # 8 micro-steps: steps after 3, 6 and the last (8)
    records = losslog.read(tmp_path / "odd" / "losses.jsonl")
    assert [i for i, r in enumerate(records[:8]) if r["grad_norm"] is not None] == [2, 5, 7]
    assert all(torch.isfinite(v).all() for v in odd.values())


def test_accumulated_replay_steps_give_the_full_batch_gradient(tmp_path, trace_dir, tok):
    """SEEKR's replay loss (CE, logit KD and lambda x attention KL) accumulated through the Accelerator over k
    micro-batches gives the gradient of the one batch of k samples. The two buffered samples come from one task
    (the same selected heads and layers) and have equal lengths, so each part's mean over the batch is the mean of
    the micro-batches' means, as the reference's normalisation (per sample, then 1/B) makes it."""
    from headwise import distributed

    cfg = CLConfig(**{**FAST, "method": "seekr", "epochs": 1, "grad_accum": 2, "lam": 10.0})
    cl = Continual(tiny_model("llama"), tok, load_trace(trace_dir), cfg, Run(tmp_path, "cl run", {}, cfg),
                   log=lambda s: None, progress=False)
    cl.fit()
    refs = cl.replay_pool(1)[:2]
    with torch.no_grad():  # move the student off its teachers, so that the KL terms are far from 0
        torch.manual_seed(0)
        for p in cl.params:
            p.add_(0.05 * torch.randn_like(p))
    assert len(refs) == 2 and {j for j, _, _ in refs} == {0}

    def gradient(batches):
        cl.opt.zero_grad(set_to_none=True)
        parts = []
        for micro in distributed.micro_steps(batches, len(batches)):
            with cl.acc.accumulate(cl.train_model):
                out = cl.method.replay_loss(cl, micro)
                cl.acc.backward(out["loss"])
                parts.append(out)
        grads = torch.cat([p.grad.flatten() for p in cl.params])
        cl.opt.zero_grad(set_to_none=True)
        return grads, parts

    whole, (parts,) = gradient([refs])
    accumulated, _ = gradient([[r] for r in refs])
    first, _ = gradient([refs[:1]])
    assert parts["attn"].item() > 1e-3 and parts["kd"].item() > 1e-3  # every term is in play
    assert torch.allclose(whole, accumulated, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(whole, first, rtol=1e-2, atol=1e-5)  # the test can fail


def test_one_process_keeps_the_model_where_the_caller_put_it(tmp_path, trace_dir, tok, monkeypatch):
    """Training always goes through an Accelerator, but one process leaves the model on the device it was loaded on
    (`--device`); only several processes place their replicas."""
    model = tiny_model("llama")
    moved = []
    real_to = model.to
    monkeypatch.setattr(model, "to", lambda *a, **k: (moved.append(a), real_to(*a, **k))[1])
    cfg = CLConfig(**FAST)
    cl = Continual(model, tok, load_trace(trace_dir), cfg, Run(tmp_path, "cl run", {}, cfg), log=lambda s: None)
    assert moved == [] and cl.train_model is model and cl.world == 1 and not cl.acc.device_placement


def test_lora_initialisation_follows_the_run_seed_not_the_process(tmp_path, trace_dir, tok):
    """LoRA's random A matrices come from the run's seed (torch's default generator is seeded differently in every
    process, so 0.1.0's LoRA runs could not be repeated); the global generator is left as it was."""
    def lora_a(seed, global_seed, out):
        torch.manual_seed(global_seed)
        cfg = CLConfig(**{**FAST, "lora": True, "seed": seed})
        cl = Continual(tiny_model("llama"), tok, load_trace(trace_dir), cfg, Run(tmp_path / out, "cl run", {}, cfg),
                       log=lambda s: None, progress=False)
        state = torch.get_rng_state()
        torch.manual_seed(global_seed)
        tiny_model("llama")
        assert torch.equal(state, torch.get_rng_state())  # fork_rng: the caller's generator is untouched
        return {n: p.detach().clone() for n, p in cl.model.named_parameters() if "lora_A" in n}

    a, b, c = lora_a(3, 1, "a"), lora_a(3, 2, "b"), lora_a(4, 1, "c")
    assert a and all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)


def test_cells_sharing_a_base_cache_evaluate_the_untrained_model_once(tmp_path, trace_dir, tok, monkeypatch):
    import headwise.cl.trainer as trainer_module

    calls = []
    real = trainer_module.score_task

    def counting(*args, **kwargs):
        calls.append(args[2].name)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "score_task", counting)
    tasks = load_trace(trace_dir)

    def cell(name, **kw):
        cfg = CLConfig(**{**FAST, "method": "seqft", "epochs": 1, **kw})
        run = Run(tmp_path / name, "cl run", cfg.to_dict())
        return Continual(tiny_model("llama"), tok, tasks, cfg, run, log=lambda s: None,
                         base_cache=tmp_path / "base-rows").fit()

    first = cell("a")
    assert len(calls) == 2 * (1 + len(tasks))  # the base row, then one row per learned task
    calls.clear()
    second = cell("b", seed=4, method="replay")  # seed and method do not enter the untrained model's row
    assert len(calls) == 2 * len(tasks)
    assert second["base"] == first["base"]
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert state["item_scores"]["base"] == json.loads((tmp_path / "a" / "state.json").read_text())["item_scores"]["base"]
    calls.clear()
    cell("c", max_new_tokens=1)  # another decoding budget is another row
    assert len(calls) == 2 * (1 + len(tasks))
    assert len(list((tmp_path / "base-rows").glob("*.json"))) == 2


def test_a_resumed_cell_shares_the_base_row_it_already_has(tmp_path, trace_dir, tok):
    tasks = load_trace(trace_dir)
    cfg = CLConfig(**{**FAST, "method": "seqft", "epochs": 1})
    run = Run(tmp_path / "a", "cl run", cfg.to_dict())
    first = Continual(tiny_model("llama"), tok, tasks, cfg, run, log=lambda s: None).fit()  # no cache yet
    again = Continual(tiny_model("llama"), tok, tasks, cfg, Run(tmp_path / "a", "cl run", cfg.to_dict()),
                      log=lambda s: None, base_cache=tmp_path / "base-rows").fit()
    (stored,) = (tmp_path / "base-rows").glob("*.json")
    assert json.loads(stored.read_text())["row"] == first["base"] == again["base"]
