"""The trainer's wiring of SEEKR, DER++ and replay, checked against values computed here from the spec
(design doc: seekr.md §3.3-§4.4, after the reference code jinghan1he/SEEKR), not against the trainer's output."""

import pytest
import torch
import torch.nn.functional as F

from headwise.cl import methods as methods_module
from headwise.cl.config import CLConfig
from headwise.cl.data import collate, load_trace
from headwise.cl.trainer import Continual
from headwise.runs import Run
from headwise.testing import tiny_model

FAST = dict(batch_size=2, lr=1e-3, epochs=1, replay=0.25, max_new_tokens=2, layer_budget=1, head_budget=2,
            query_budget=0, logit_topk=0, checkpoint_every=100, seed=3)


def trainer(tmp, trace_dir, tok, **kw) -> Continual:
    cfg = CLConfig(**{**FAST, **kw})
    return Continual(tiny_model("llama"), tok, load_trace(trace_dir), cfg, Run(tmp, "cl run", cfg.to_dict()),
                     log=lambda s: None, progress=False)


# Hand-set sensitivities (before the per-layer normalisation) and forgettabilities of the tiny llama's
# 2 layers x 4 heads, for tasks a and b.
S = {"a": [[1, 1, 2, 0], [3, 1, 0, 0]], "b": [[0, 0, 0, 1], [1, 1, 1, 1]]}
FORGET = {"a": [[0.1, 0.1, 0.1, 0.1], [0.8, 0.4, 0.1, 0.1]], "b": [[0, 0, 0, 0.3], [0, 0, 0.2, 0.04]]}


def test_importance_accumulates_normalised_sensitivity_times_forgettability(tmp_path, trace_dir, tok, monkeypatch):
    """I <- I + (S / row sums of S) * F after every task; then the top B_L layers by row sum of I, and the top
    B_H heads inside them (seekr.md §4.3-4.4)."""
    real = methods_module.sensitivity_and_maps
    current = {}

    def sensitivity(model, ids, labels, rows, masked, **padding):
        _, maps, logits = real(model, ids, labels, rows, masked, **padding)
        return torch.tensor(S[current["task"]], dtype=torch.float32), maps, logits

    def forget(before, after, **padding):
        return torch.tensor(FORGET[current["task"]])

    monkeypatch.setattr(methods_module, "sensitivity_and_maps", sensitivity)
    monkeypatch.setattr(methods_module, "forgettability", forget)
    cl = trainer(tmp_path / "run", trace_dir, tok)
    post = cl.method.teacher

    def post_task(trainer, t):
        current["task"] = trainer.tasks[t].name
        return post(trainer, t)

    monkeypatch.setattr(cl.method, "teacher", post_task)
    res = cl.fit()
    # By hand: (S_a / rows) * F_a = [[.025, .025, .05, 0], [.6, .1, 0, 0]]; (S_b / rows) * F_b =
    # [[0, 0, 0, .3], [0, 0, .05, .01]]. After a: layer 1 (0.7 > 0.1), heads 0 and 1. After b, the sum
    # [[.025, .025, .05, .3], [.6, .1, .05, .01]] still picks layer 1 (0.76 > 0.4), heads 0 and 1; task b's
    # own product alone would pick layer 0 and a plain (unnormalised) S other values.
    want = torch.tensor([[0.025, 0.025, 0.05, 0.3], [0.6, 0.1, 0.05, 0.01]])
    assert torch.allclose(torch.tensor(cl.state["importance"]), want, atol=1e-6)
    assert res["heads"] == {"a": {"1": [0, 1]}, "b": {"1": [0, 1]}}


def test_replay_loss_is_the_weighted_sum_of_ce_logit_kd_and_attention_kl(tmp_path, trace_dir, tok):
    """(1 - alpha) CE + alpha KD + lambda KL (seekr.md §3.3; alpha is `kd_weight`), with alpha and lambda away from
    the defaults, each part recomputed here from an eager forward and the stored teacher signals."""
    from headwise.cl.losses import attention_kl

    alpha, lam = 0.3, 5000.0  # lambda large enough that its term shows next to CE and KD
    cl = trainer(tmp_path / "run", trace_dir, tok, kd_weight=alpha, lam=lam)
    cl.fit()
    refs = cl.replay_pool(1)
    got = cl.method.replay_loss(cl, refs)
    rows = [cl.encoded(cl.tasks[j], i) for j, i, _ in refs]
    b = collate(rows, cl.pad)
    teachers = [cl.shard(j).sample(k) for j, _, k in refs]
    cl.core.set_attn_implementation("eager")
    with torch.no_grad():
        out = cl.core(**b, output_attentions=True, use_cache=False)
    ce = out.loss
    # Logit KD, shifted: the positions that predict an answer token; full vocabulary (logit_topk 0).
    kd_terms = []
    for i, t in enumerate(teachers):
        positions = [p for p in range(b["labels"].shape[1] - 1) if b["labels"][i, p + 1] != -100]
        logp_s = F.log_softmax(out.logits[i, positions].float(), -1)
        kd_terms.append(-(t["logprobs"].float().exp() * logp_s).sum(-1))
    kd = torch.cat(kd_terms).mean()
    heads = {l: hs for t in teachers for l, hs in t["heads"].items()}
    assert heads, "SEEKR chose no heads"
    eager_maps = {l: out.attentions[l][:, hs] for l, hs in heads.items()}
    attn = attention_kl(eager_maps, heads, teachers, [len(ids) for ids, _ in rows])
    assert attn.item() > 0
    assert got["ce"].item() == pytest.approx(ce.item(), rel=1e-4)
    assert got["kd"].item() == pytest.approx(kd.item(), rel=1e-4)
    assert got["attn"].item() == pytest.approx(attn.item(), rel=1e-3)
    want = (1 - alpha) * ce + alpha * kd + lam * attn
    assert (lam * attn).item() > 1e-3 * want.item()
    assert got["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    assert (got["loss"] - (1 - alpha) * ce - alpha * kd).item() == pytest.approx((lam * attn).item(), rel=1e-2)


def test_plain_replay_trains_on_the_old_buffers_joined_to_the_new_task(tmp_path, trace_dir, tok, monkeypatch):
    """exp_seq_replay.sh: the buffers of all earlier tasks are concatenated with the new task's data and
    shuffled; there is no replay step and no distillation."""
    seen = []
    cl = trainer(tmp_path / "run", trace_dir, tok, method="replay", replay=3)
    task_loss = cl._task_loss

    def record(refs):
        seen.append(list(refs))
        return task_loss(refs)

    monkeypatch.setattr(cl, "_task_loss", record)
    kinds = []
    cl.fit(lambda k, kind: kinds.append(kind))
    assert set(kinds) == {"task"}
    in_b = [r for refs in seen[4:] for r in refs]  # task a: 8 items in 4 steps of 2
    buffer_a = cl.state["buffers"]["a"]
    assert len(buffer_a) == 3
    assert sorted(in_b) == sorted([(1, i) for i in range(8)] + [(0, i) for i in buffer_a])
    assert not (tmp_path / "run" / "teacher").exists()


def test_derpp_distils_the_logits_of_the_model_right_after_the_old_task(tmp_path, trace_dir, tok):
    """DER++ (seekr.md §3.1, step 4a): the teacher logits of task a's buffer come from the checkpoint taken
    right after learning a; the replay loss is (1 - alpha) CE + alpha KD, with no attention term."""

    class Stop(Exception):
        pass

    def stop(k, kind):
        if cl.tasks[1].name in cl.state["timing"]:
            raise Stop

    cl = trainer(tmp_path / "run", trace_dir, tok, method="derpp", kd_weight=0.25)
    with pytest.raises(Stop):
        cl.fit(stop)
    after_a = tiny_model("llama")
    ck = torch.load(tmp_path / "run" / "checkpoint" / "ckpt.pt", weights_only=True)
    assert ck["progress"]["task"] == 0  # the checkpoint of the end of task a
    after_a.load_state_dict(ck["weights"], strict=False)
    shard = cl.shard(0)
    for k, item in enumerate(cl.state["buffers"]["a"]):
        ids, labels = cl.encoded(cl.tasks[0], item)
        with torch.no_grad():
            logits = after_a(input_ids=torch.tensor([ids])).logits[0]
        positions = [p for p in range(len(ids) - 1) if labels[p + 1] != -100]
        want = F.log_softmax(logits[positions].float(), -1)
        assert torch.allclose(shard.sample(k)["logprobs"].float(), want, atol=2e-3)
    parts = cl.method.replay_loss(cl, cl.replay_pool(1))
    assert parts["attn"] is None
    assert parts["loss"].item() == pytest.approx((0.75 * parts["ce"] + 0.25 * parts["kd"]).item(), rel=1e-5)
