"""The offline topic multiple-choice task and the lazy lm-eval wrapper."""

import importlib.util

import pytest
import torch

from headwise.errors import HeadwiseError
from headwise.eval import harness, topic_choice
from headwise.testing import ByteTokenizer, tiny_model


def test_option_scores_are_mean_token_log_likelihoods():
    model, tok = tiny_model("llama"), ByteTokenizer()
    prompt, options = "abc", ["xy", "z"]
    scores = topic_choice.option_scores(model, tok, prompt, options)
    ids = tok("abc xy").input_ids
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
    expected = sum(logp[i - 1, ids[0, i]].item() for i in range(3, 6)) / 3
    assert scores[0] == pytest.approx(expected, abs=1e-5)


@pytest.mark.real
def test_topic_items_hold_the_answer_once():
    from headwise.assets.registry import is_present

    if not is_present("wiki"):
        pytest.skip("Wikipedia summaries not in the asset cache")
    its = topic_choice.items(n=20, choices=4, seed=1)
    assert len(its) == 20
    for it in its:
        assert len(set(it["options"])) == 4 and 0 <= it["answer"] < 4
        assert "Uncategorized" not in it["options"]
    assert its == topic_choice.items(n=20, choices=4, seed=1)


@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is not None, reason="lm-eval is installed")
def test_lm_eval_missing_gives_a_clear_error():
    with pytest.raises(HeadwiseError, match=r"headwise\[eval\]"):
        harness.lm_eval_tasks(tiny_model("llama"), None, ["piqa"])
