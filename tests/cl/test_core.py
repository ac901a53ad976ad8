import random

import pytest
import torch

from headwise.cl.buffer import buffer_size, select
from headwise.cl.config import CLConfig
from headwise.cl.importance import forgettability, normalize_layers, query_rows, select_heads
from headwise.cl.losses import attention_kl, kd_positions, logit_kd
from headwise.cl.metrics import backward_transfer, forward_transfer, overall_performance, summarize
from headwise.cl.schedule import epoch_steps
from headwise.errors import HeadwiseError

R = [[0.8, 0.1, 0.2],
     [0.6, 0.9, 0.3],
     [0.5, 0.7, 0.6]]


def test_metrics_on_a_hand_made_matrix():
    assert overall_performance(R) == pytest.approx((0.5 + 0.7 + 0.6) / 3)
    assert backward_transfer(R) == pytest.approx(((0.5 - 0.8) + (0.7 - 0.9)) / 2)
    assert backward_transfer(R, "paper") == pytest.approx(((0.5 - 0.8) + (0.7 - 0.9) + 0) / 3)
    assert forward_transfer(R, [0.0, 0.05, 0.1]) == pytest.approx(((0.1 - 0.05) + (0.3 - 0.1)) / 2)
    s = summarize(R, [0.0, 0.05, 0.1])
    assert s["bwt"] != s["bwt_paper"] and "1/T" in s["bwt_conventions"]["bwt_paper"]
    with pytest.raises(HeadwiseError, match="square"):
        overall_performance([[1, 2]])


@pytest.mark.parametrize("ratio,size,want,faithful_want", [
    (0.01, 5000, 50, 50), (0.1, 1000, 100, 100), (0.01, 50, 1, None), (0.1, 64, 6, 6), (1, 7, 7, 1), (3, 10, 3, 3)])
def test_buffer_sizes_per_ratio(ratio, size, want, faithful_want):
    """--faithful: the reference (jinghan1he/SEEKR, training/seekr.py `get_dataset`) keeps int(|D| * r) items
    for r < 1 and int(r) for r >= 1 (so r = 1 is one item). Ours: r = 1 is the whole task and a ratio keeps at
    least one item. Where the reference keeps 0 items its replay loader fails, so --faithful refuses."""
    assert buffer_size(ratio, size) == want
    assert len(select(list(range(size)), ratio, "random", 0)) == want
    assert select(list(range(size)), ratio, "first", 0) == list(range(want))
    if faithful_want is None:
        with pytest.raises(HeadwiseError, match="keeps int"):
            buffer_size(ratio, size, truncate=True)
    else:
        assert buffer_size(ratio, size, truncate=True) == faithful_want


@pytest.mark.parametrize("ratio", [0, -0.5, 1.5, float("nan")])
def test_bad_replay_ratio(ratio):
    with pytest.raises(HeadwiseError, match="replay"):
        buffer_size(ratio, 10)


def test_replay_count_larger_than_task():
    with pytest.raises(HeadwiseError, match="larger than task t"):
        buffer_size(20, 10, "task t")


def test_forgettability_and_normalised_sensitivity_on_constructed_tensors():
    before = torch.zeros(2, 3, 4, 4)
    after = before.clone()
    after[1, 2] = 0.5  # only head (1, 2) moved, by 0.5 everywhere
    after[0, 0, 0, 0] = 1.0  # one entry of head (0, 0) moved by 1
    f = forgettability(before, after)
    assert f[1, 2] == pytest.approx(0.25) and f[0, 0] == pytest.approx(1 / 16)
    assert f.sum() == pytest.approx(0.25 + 1 / 16)
    s = normalize_layers(torch.tensor([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0]]))
    assert s.tolist() == [[0.25, 0.75, 0.0], [0.0, 0.0, 0.0]]


def test_hierarchical_selection_respects_budgets():
    imp = torch.tensor([[5.0, 0.0, 0.0],   # layer sum 5
                        [2.0, 2.0, 2.0],   # 6
                        [0.1, 0.1, 0.1],   # 0.3
                        [9.0, 0.0, 0.0]])  # 9: its lone strong head wins
    sel = select_heads(imp, layer_budget=2, head_budget=3)
    assert sorted(sel) == [1, 3]  # layer 0 (sum 5) loses to layer 1 (sum 6) despite its head of 5
    assert sel == {1: [0, 1], 3: [0]}
    assert sum(map(len, sel.values())) == 3
    assert select_heads(imp, 0.5, 0.25) == sel  # fractions: 2 of 4 layers, 3 of 12 heads
    with pytest.raises(HeadwiseError, match="layer budget 5 is larger"):
        select_heads(imp, 5, 3)
    with pytest.raises(HeadwiseError, match="head budget 7"):
        select_heads(imp, 2, 7)


def test_query_rows():
    rng = random.Random(0)
    rows = query_rows(10, 4, rng, resample=False)
    assert len(rows) == 4 and rows == sorted(rows) and len(set(rows)) == 4
    assert query_rows(3, 4, rng, resample=False) is None
    assert len(query_rows(3, 4, rng, resample=True)) == 4  # with replacement, as the original
    assert query_rows(10, 0, rng, resample=False) is None


def test_attention_kl_matches_a_loop_and_is_zero_for_equal_maps():
    torch.manual_seed(0)
    n_pad = 5
    lengths = [5, 3]
    student = {0: torch.softmax(torch.randn(2, 2, n_pad, n_pad), -1), 2: torch.softmax(torch.randn(2, 1, n_pad, n_pad), -1)}
    heads = {0: [1, 4], 2: [0]}
    t0 = {"heads": {0: [4], 2: [0]}, "queries": [1, 3],
          "maps": {0: torch.softmax(torch.randn(1, 2, 5), -1), 2: torch.softmax(torch.randn(1, 2, 5), -1)}}
    t1 = {"heads": {0: [1, 4]}, "queries": None, "maps": {0: torch.softmax(torch.randn(2, 3, 3), -1)}}
    got = attention_kl(student, heads, [t0, t1], lengths)

    def kl(p, q):
        return sum(float(p[k] * (p[k].log() - (q[k] + 1e-8).log())) for k in range(len(p)))

    layer0 = (sum(kl(t0["maps"][0][0, r], student[0][0, 1, q]) for r, q in enumerate([1, 3])) / 2
              + sum(kl(t1["maps"][0][h, q], student[0][1, h, 2 + q, 2:]) for h in range(2) for q in range(3)) / 6) / 2
    layer2 = (sum(kl(t0["maps"][2][0, r], student[2][0, 0, q]) for r, q in enumerate([1, 3])) / 2) / 2
    assert got.item() == pytest.approx((layer0 + layer2) / 2, rel=1e-5)
    same = {"heads": {0: [1]}, "queries": None, "maps": {0: student[0][0, :1]}}
    assert attention_kl(student, heads, [same], [5]).item() == pytest.approx(0.0, abs=1e-6)


def test_logit_kd_positions_and_topk():
    labels = torch.tensor([[-100, -100, 5, 6, 2]])
    assert kd_positions(labels, shifted=True).tolist() == [[False, True, True, True, False]]
    assert kd_positions(labels, shifted=False).tolist() == [[False, False, True, True, True]]
    torch.manual_seed(0)
    student = torch.randn(1, 5, 7)
    pos = kd_positions(labels, True)
    teacher = torch.randn(3, 7).log_softmax(-1)
    full = logit_kd(student, pos, [{"logprobs": teacher}])
    want = -(teacher.exp() * student[0, 1:4].log_softmax(-1)).sum(-1).mean()
    assert full.item() == pytest.approx(want.item(), rel=1e-5)
    values, index = teacher.topk(7, -1)  # all of the vocabulary through the top-k path
    assert logit_kd(student, pos, [{"logprobs": values, "index": index}]).item() == pytest.approx(want.item(), rel=1e-5)


def test_schedule_follows_the_reference_loop():
    """jinghan1he/SEEKR training/seekr.py `train_one_task`: for task step k, a replay step runs first when
    (k + 1) % replay_cycle == 0, with replay_cycle = len(train_loader) // len(replay_loader) unless given."""
    steps = epoch_steps(8, 2, 2, 0, 1, 0, truncate_cycle=False)  # 4 task batches, 1 replay batch: cycle 4
    assert [k for k, _ in steps] == ["task", "task", "task", "replay", "task"]
    assert epoch_steps(8, 2, 2, 0, 1, 0, False) == steps  # seeded
    # 6 task batches, 2 replay batches: cycle 3, replay before task steps 2 and 5.
    kinds = [k for k, _ in epoch_steps(12, 4, 2, 0, 1, 0, False)]
    assert kinds == ["task", "task", "replay", "task", "task", "task", "replay", "task"]
    # A given cycle (the reference's --replay_cycle): 2 over 6 task batches replays 3 times, the one replay
    # batch over and over (the reference restarts the replay iterator when it runs out).
    given = epoch_steps(12, 2, 2, 0, 1, 0, False, cycle=2)
    assert [k for k, _ in given] == ["task", "replay", "task", "task", "replay", "task", "task", "replay", "task"]
    assert given[1][1] == given[4][1] == given[7][1]
    # 1 task batch, 3 replay batches: automatic cycle 0. The reference never replays (faithful); we use 1.
    assert [k for k, _ in epoch_steps(2, 6, 2, 0, 1, 0, truncate_cycle=True)] == ["task"]
    assert [k for k, _ in epoch_steps(2, 6, 2, 0, 1, 0, truncate_cycle=False)] == ["replay", "task"]
    for bad in (0, -1):
        with pytest.raises(HeadwiseError, match="replay cycle"):
            epoch_steps(8, 2, 2, 0, 1, 0, False, cycle=bad)


def test_replay_cycle_is_checked_against_the_tasks():
    from headwise.cl.config import check_sequence
    from headwise.cl.data import Task

    tasks = [Task(n, "accuracy", [{"prompt": "p", "answer": "a"}] * 8, [], [{"prompt": "p", "answer": "a"}])
             for n in ("a", "b")]
    check_sequence(CLConfig(batch_size=2, replay_cycle=4), tasks)  # 4 task batches
    with pytest.raises(HeadwiseError, match="more than the 4 task batches of task b"):
        check_sequence(CLConfig(batch_size=2, replay_cycle=5), tasks)
    check_sequence(CLConfig(method="replay", batch_size=2, replay_cycle=5), tasks)  # replay has no cycle
    for bad in (0, -2):
        with pytest.raises(HeadwiseError, match="replay-cycle must be a positive"):
            CLConfig(replay_cycle=bad)


def test_config_validation_and_the_faithful_preset():
    """The `faithful` preset is data: the original code's choice for every setting whose default fixes it
    (docs/seekr.md#faithful-mode); explicit settings override it."""
    faithful = CLConfig.resolve("faithful")
    assert faithful.query_budget == 0 and faithful.logit_topk == 0 and faithful.replay_sampling == "first"
    assert (faithful.kd_positions, faithful.sensitivity_entries, faithful.buffer_sizes, faithful.auto_cycle,
            faithful.short_queries) == ("own-label", "all", "truncate", "truncate", "resample")
    assert CLConfig().kd_positions == "shifted" and CLConfig().sensitivity_entries == "valid"
    assert CLConfig.resolve("faithful", {"query_budget": 8}).query_budget == 8
    with pytest.raises(HeadwiseError, match="unknown preset 'paperish'"):
        CLConfig.resolve("paperish")
    with pytest.raises(HeadwiseError, match="kd positions must be one of"):
        CLConfig(kd_positions="sideways")
    for bad in (dict(replay=0), dict(replay=2.5), dict(method="ewc2"), dict(epochs=0), dict(lr=-1)):
        with pytest.raises(HeadwiseError):
            CLConfig(**bad)
    with pytest.raises(HeadwiseError, match="unknown CLConfig settings"):
        CLConfig.from_dict({"nope": 1})


def test_teacher_shard_round_trip_keeps_causal_maps_and_topk_logits(tmp_path):
    from headwise.cl.teacher import TeacherShard, topk_logprobs, write_shard

    torch.manual_seed(0)
    n = 6
    full = torch.softmax(torch.randn(3, n, n).masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf")), -1)
    samples = [{"maps": {2: full[:2, [1, 4]]}, "queries": [1, 4], "logits": topk_logprobs(torch.randn(3, 50), 5)},
               {"maps": {2: full[:2]}, "queries": None, "logits": topk_logprobs(torch.randn(2, 50), 0)}]
    size = write_shard(tmp_path / "t.safetensors", "t", [7, 9], {2: [0, 5]}, samples)
    shard = TeacherShard(tmp_path / "t.safetensors")
    assert shard.items == [7, 9] and shard.heads == {2: [0, 5]}
    a, b = shard.sample(0), shard.sample(1)
    assert torch.allclose(a["maps"][2].float(), full[:2, [1, 4]], atol=1e-3)
    assert torch.allclose(b["maps"][2].float(), full[:2], atol=1e-3)
    assert a["logprobs"].shape == (3, 5) and a["index"].dtype == torch.int32 and "index" not in b
    packed = 2 * (2 + 5) + 2 * (n * (n + 1) // 2)  # causal entries of rows 1 and 4, then of all rows
    assert size <= 2 * packed + (3 * 5 * 6 + 2 * 50 * 2) + 2048  # float16 maps + logits + header


def test_which_set_ups_shard_the_weights(monkeypatch):
    from types import SimpleNamespace as NS

    from accelerate.utils import DistributedType as D

    from headwise.distributed import shards_parameters

    def acc(kind, **state):
        return NS(distributed_type=kind, state=NS(**state))

    assert not shards_parameters(acc(D.MULTI_CPU))
    assert shards_parameters(acc(D.FSDP, fsdp_plugin=NS(fsdp_version=2)))
    with pytest.raises(HeadwiseError, match="needs FSDP version 2"):
        shards_parameters(acc(D.FSDP, fsdp_plugin=NS(fsdp_version=1)))
    assert shards_parameters(acc(D.DEEPSPEED, deepspeed_plugin=NS(zero_stage=3)))
    assert not shards_parameters(acc(D.DEEPSPEED, deepspeed_plugin=NS(zero_stage=2)))
    # FSDP 2 asked for on CPU, where Accelerate gives DDP over gloo: headwise shards the weights itself.
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    assert shards_parameters(acc(D.MULTI_CPU))
