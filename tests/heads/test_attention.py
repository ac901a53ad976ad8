import pytest
import torch

from headwise.heads import InvalidHeadsError, attention_maps, layout
from headwise.testing import FAMILIES, model_inputs, text_batch, tiny_model

HEADS = {0: [0, 3], 1: None}


def eager_attentions(family, ids, mask):
    model = tiny_model(family, attn_implementation="eager")
    with torch.no_grad():
        out = model(**model_inputs(family, ids, mask), output_attentions=True)
    # InstructBLIP keeps the language model's outputs apart from the Q-Former's.
    return getattr(out, "language_model_outputs", out).attentions


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_maps_equal_eager_output_attentions_on_left_padded_batches(family, backend):
    ids, mask = text_batch(3, 11, left_pad=3)
    ref = eager_attentions(family, ids, mask)
    model = tiny_model(family, attn_implementation=backend)
    with torch.no_grad():
        plain = model(**model_inputs(family, ids, mask)).logits
        with attention_maps(model, HEADS) as maps:
            logits = model(**model_inputs(family, ids, mask)).logits
    assert torch.equal(logits, plain)  # computed beside the backend, not instead of it
    real = mask.bool()[:, None, :, None]  # padded query rows are undefined in any backend
    for layer, heads in maps.heads.items():
        got = maps.maps[layer]
        assert got.shape == (3, len(heads), 11, 11) and got.dtype == torch.float32
        assert ((got - ref[layer][:, heads].float()).abs() * real).max() <= 1e-5


@pytest.mark.parametrize("family", ["mistral", "gemma2", "gemma3_text"])
def test_sliding_window_beyond_the_window(family):
    ids, mask = text_batch(2, 12, left_pad=0)  # longer than the tiny window of 4, no padding: mask may be None
    ref = eager_attentions(family, ids, mask)
    model = tiny_model(family)
    with torch.no_grad(), attention_maps(model, [0, 1]) as maps:
        model(**model_inputs(family, ids, mask))
    for layer in (0, 1):
        assert (maps.maps[layer] - ref[layer].float()).abs().max() <= 1e-5


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "phi3", "qwen2_vl", "opt"])
def test_decode_step_maps_are_the_last_rows_of_the_full_maps(family):
    model = tiny_model(family)
    ids, _ = text_batch(1, 7)
    with torch.no_grad(), attention_maps(model, {1: [1, 2]}) as maps:
        full = model(**model_inputs(family, ids))
        want = maps.maps[1][:, :, -1:]
        cache = model(**model_inputs(family, ids[:, :-1]), use_cache=True).past_key_values
        model(input_ids=ids[:, -1:], attention_mask=torch.ones_like(ids), past_key_values=cache, use_cache=True)
    assert maps.maps[1].shape == (1, 2, 1, 7)
    assert (maps.maps[1] - want).abs().max() <= 1e-5
    del full


QK_NAMES = ("q_proj", "k_proj", "qkv_proj", "c_attn", "query_key_value")


@pytest.mark.parametrize("family", FAMILIES)
def test_differentiable_maps_reach_q_and_k_weights(family):
    model = tiny_model(family)
    lay = layout(model)
    ids, mask = text_batch(2, 8, left_pad=2)
    with attention_maps(model, {1: [0, 1]}, differentiable=True) as maps:
        model(**model_inputs(family, ids, mask))
    target = torch.rand_like(maps.maps[1])
    ((maps.maps[1] - target) ** 2).sum().backward()
    grads = {name: p.grad for name, p in lay.attentions[1].named_parameters()
             if name.split(".")[0] in QK_NAMES and name.endswith("weight")}
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_non_differentiable_maps_carry_no_graph():
    model = tiny_model("llama")
    ids, _ = text_batch(1, 5)
    with attention_maps(model, [0]) as maps:
        model(input_ids=ids)
    assert not maps.maps[0].requires_grad


def test_backend_and_hooks_restored_after_exception():
    model = tiny_model("llava")
    text = model.config.get_text_config()
    vision = model.config.vision_config._attn_implementation
    with pytest.raises(RuntimeError):
        with attention_maps(model, [0]):
            assert text._attn_implementation.startswith("headwise+")
            assert model.config.vision_config._attn_implementation == vision  # vision tower untouched
            raise RuntimeError
    assert text._attn_implementation == "sdpa"
    from headwise.heads.attention import _ACTIVE
    assert not _ACTIVE


def test_nested_contexts_collect_independently():
    model = tiny_model("llama")
    ids, _ = text_batch(1, 5)
    with attention_maps(model, {0: [0]}) as outer, attention_maps(model, {0: [1], 1: [2]}) as inner:
        model(input_ids=ids)
    assert set(outer.maps) == {0} and set(inner.maps) == {0, 1}
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("heads, message", [({2: [0]}, "layer 2"), ({0: [9]}, "head 9"), ({0: []}, "no heads")])
def test_bad_heads(heads, message):
    with pytest.raises(InvalidHeadsError, match=message):
        with attention_maps(tiny_model("llama"), heads):
            pass


def test_mask_free_path_builds_causal_and_sliding_masks():
    from headwise.heads import head_probabilities

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 4, 3, 8, generator=g), torch.randn(1, 2, 7, 8, generator=g)  # decode-like: 3 queries, 7 keys
    heads = torch.tensor([0, 3])
    i = torch.arange(3)[:, None] + 4
    j = torch.arange(7)[None]
    for window in (None, 3):
        allowed = (j <= i) & (((i - j) < window) if window else True)
        scores = q[:, heads] @ k[:, heads // 2].transpose(-1, -2) * 8 ** -0.5
        want = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1)
        got = head_probabilities(None, q, k, None, heads, sliding_window=window)
        assert (got - want).abs().max() <= 1e-6


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2", "qwen2_vl", "phi3", "opt"])
def test_identity_score_edit_changes_nothing(family):
    from headwise.heads import edit_attention_scores

    model = tiny_model(family)
    ids, mask = text_batch(2, 9, left_pad=2)
    with torch.no_grad():
        ref = model(**model_inputs(family, ids, mask)).logits
        with edit_attention_scores(model, [0, 1], lambda scores, layer: scores):
            got = model(**model_inputs(family, ids, mask)).logits
    real = mask.bool()
    assert (got[real] - ref[real]).abs().max() <= 1e-5
    assert model.config.get_text_config()._attn_implementation in ("sdpa", "eager")


def test_score_edit_reaches_the_output_and_can_be_checked_by_hand():
    from headwise.heads import edit_attention_scores

    model = tiny_model("llama")
    ids, _ = text_batch(1, 6)
    seen = []

    def hide_first_key(scores, layer):
        seen.append(layer)
        scores = scores.clone()
        scores[..., 1:, 0] = float("-inf")  # no query but the first may read token 0
        return scores

    with torch.no_grad():
        with edit_attention_scores(model, [1], hide_first_key), attention_maps(model, {1: None}) as maps:
            edited = model(input_ids=ids).logits
        with attention_maps(model, {1: None}) as plain_maps:
            plain = model(input_ids=ids).logits
    assert seen == [1]
    assert (edited - plain).abs().max() > 1e-4
    # By hand: layer 1's inputs are untouched (only its scores are edited), so hiding key 0 from queries 1.. is
    # the plain softmax with key 0 removed: q[i, 0] = 0 and q[i, j] = p[i, j] / (1 - p[i, 0]) for j >= 1.
    p, q = plain_maps.maps[1][0], maps.maps[1][0]  # [heads, queries, keys]
    assert (q[:, 1:, 0] == 0).all() and torch.allclose(q[:, 0, 0], torch.ones(q.shape[0]))
    expected = p[:, 1:, 1:] / (1 - p[:, 1:, :1])
    assert (q[:, 1:, 1:] - expected).abs().max() <= 1e-5 and (p[:, 1:, 0] > 1e-3).all()
    with pytest.raises(InvalidHeadsError, match="already have an attention edit"):
        with edit_attention_scores(model, [1], hide_first_key), edit_attention_scores(model, [1], hide_first_key):
            pass
    del maps


def test_on_probs_gives_the_probabilities_the_output_is_computed_from():
    from headwise.heads import edit_attention_scores

    ids, mask = text_batch(2, 8, left_pad=2)
    ref = eager_attentions("llama", ids, mask)
    model = tiny_model("llama")
    got = {}
    with edit_attention_scores(model, [0, 1], lambda s, layer: s, on_probs=lambda p, layer: got.__setitem__(layer, p)):
        logits = model(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()[:, None, :, None]
    for layer in (0, 1):
        assert ((got[layer] - ref[layer]).abs() * real).max() <= 1e-5
    grads = torch.autograd.grad(logits[:, -1].sum(), [got[0], got[1]])
    assert all(g.abs().sum() > 0 for g in grads)  # on the output's graph, unlike the side-computed maps
    assert all(p.grad is None for p in model.parameters())
