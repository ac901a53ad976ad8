"""`CLConfig.importance_padding = "buffer"` (the faithful preset): importance of each buffered sample as a row of the
whole buffer padded to its longest sample, as jinghan1he/SEEKR @ 22fe447 scores it (training/seekr.py:104-110 pad
the buffer to a multiple of 8; 244-245 average the squared gradient over the padded square; 364 divides the
forgettability by the padded length). tests/parity/test_seekr_parity.py checks the figures against the reference."""

import pytest
import torch

from headwise.cl.config import CLConfig
from headwise.cl.importance import buffer_length, forgettability, padded_mask, sensitivity_and_maps
from headwise.testing import text_batch, tiny_model


def sample(n: int = 9):
    ids = text_batch(1, n)[0][0].tolist()
    return ids, [-100] * 5 + ids[5:]


def test_the_field_defaults_to_unpadded_and_the_faithful_presets_pad():
    assert CLConfig().importance_padding == "none"
    assert CLConfig.resolve("faithful").importance_padding == "buffer"
    assert CLConfig.resolve("paper-faithful").importance_padding == "buffer"
    recorded_before = {k: v for k, v in CLConfig().to_dict().items() if k != "importance_padding"}
    assert CLConfig.from_dict(recorded_before) == CLConfig()  # an older run directory resumes unpadded
    with pytest.raises(Exception, match="importance padding must be one of none, buffer"):
        CLConfig(importance_padding="longest")


def test_buffer_length_is_the_longest_sample_rounded_up_to_a_multiple_of_8():
    assert [buffer_length(x) for x in ([9, 13, 16, 21], [16, 16], [1], [17])] == [24, 16, 8, 24]


def test_padded_mask_reproduces_the_additive_mask_of_transformers_4_31():
    """4.31 adds the causal and the padding masks (finfo.min each, -inf where both hold) before the softmax: the
    softmax of a pad row is uniform over its pad prefix and every valid key; a valid row sees valid keys causally."""
    n, total = 3, 6
    lowest = torch.finfo(torch.float32).min
    causal = torch.full((total, total), lowest).triu(1)
    pad = torch.tensor([lowest] * (total - n) + [0.0] * n)[None, :].expand(total, total)
    scores = torch.randn(total, total)
    want = torch.softmax(scores + causal + pad, -1)
    got = torch.softmax((scores + padded_mask(n, total, "cpu")[0, 0]).clamp_min(lowest), -1)
    assert torch.allclose(got, want, atol=1e-7)
    assert torch.allclose(want[1], torch.tensor([0.2, 0.2, 0, 0.2, 0.2, 0.2]))  # a pad row, uniform


def test_padding_keeps_the_valid_part_and_adds_the_pad_keys_gradient_mass():
    model = tiny_model("llama")
    ids, labels = sample(9)
    plain = sensitivity_and_maps(model, ids, labels, [2, 7], masked=False)
    same = sensitivity_and_maps(model, ids, labels, [2, 7], masked=False, padded=9)
    # A pad token of its own embedding (the config's pad id embeds to zeros, whose values are zero in layer 0).
    padded = sensitivity_and_maps(model, ids, labels, [2, 7], masked=False, padded=16, pad_id=ids[0])
    valid_only = sensitivity_and_maps(model, ids, labels, [2, 7], masked=True, padded=16, pad_id=ids[0])
    assert all(torch.equal(a, b) for a, b in zip(plain, same))  # nothing to pad
    assert torch.allclose(padded[1], plain[1], atol=1e-5) and torch.allclose(padded[2], plain[2], atol=1e-4)
    assert torch.allclose(valid_only[0], sensitivity_and_maps(model, ids, labels, None, masked=True)[0], rtol=1e-4)
    # Over the padded square: the 9 x 9 entries' mass plus that of the pad keys, divided by 16 x 16.
    extra = padded[0] * 16 ** 2 - plain[0] * 9 ** 2
    assert (extra > 1e-6 * padded[0].max() * 16 ** 2).all()


def test_padded_forgettability_divides_by_the_padded_length():
    before, after = torch.rand(2, 3, 4, 9), torch.rand(2, 3, 4, 9)
    sq = ((before - after) ** 2).sum((-1, -2))
    assert torch.allclose(forgettability(before, after), sq / 36)
    assert torch.allclose(forgettability(before, after, padded=16), sq / (4 * 16))  # 4 query rows
    square_b, square_a = torch.rand(2, 3, 9, 9), torch.rand(2, 3, 9, 9)
    assert torch.allclose(forgettability(square_b, square_a, padded=16, every_row=True),
                          ((square_b - square_a) ** 2).sum((-1, -2)) / 256)


@pytest.mark.parametrize("padding", ["none", "buffer"])
def test_the_trainer_pads_each_task_buffer_to_its_own_longest_sample(tmp_path, trace_dir, tok, monkeypatch, padding):
    """SEEKR's teacher step hands sensitivity and forgettability the buffer's padded length (the reference pads each
    task's replay buffer as one batch, training/seekr.py:119-123), and the query budget 0 of every row."""
    from headwise.cl import methods as methods_module
    from headwise.cl.data import load_trace
    from headwise.cl.trainer import Continual
    from headwise.runs import Run

    seen = []
    real_s, real_f = methods_module.sensitivity_and_maps, methods_module.forgettability

    def sensitivity(model, ids, labels, rows, masked, **kw):
        seen.append(("s", len(ids), kw["padded"]))
        return real_s(model, ids, labels, rows, masked, **kw)

    def forget(before, after, **kw):
        seen.append(("f", before.shape[-1], kw["padded"], kw["every_row"]))
        return real_f(before, after, **kw)

    monkeypatch.setattr(methods_module, "sensitivity_and_maps", sensitivity)
    monkeypatch.setattr(methods_module, "forgettability", forget)
    cfg = CLConfig(batch_size=2, lr=1e-3, epochs=1, replay=0.5, max_new_tokens=2, layer_budget=1, head_budget=2,
                   query_budget=0, logit_topk=0, checkpoint_every=100, seed=3, importance_padding=padding)
    cl = Continual(tiny_model("llama"), tok, load_trace(trace_dir), cfg, Run(tmp_path / "run", "cl run", cfg.to_dict()),
                   log=lambda s: None, progress=False)
    cl.fit()
    # The tiny trace's items are 6 tokens long: the reference pads them to 8, the next multiple of 8.
    assert seen and {n for _, n, *_ in seen} == {6}
    for kind, n, padded, *rest in seen:
        assert padded == (None if padding == "none" else 8)
        assert rest in ([], [True])
