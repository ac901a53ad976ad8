"""Wanda and SparseGPT against locuslab/wanda (golden from parity/wanda.py) on SmolLM2 at 50%, the golden's
calibration tokens: one test per row of docs/parity.md.

- headwise's sequential mode (the faithful preset) gives the reference's Wanda masks and perplexity;
- the default one-shot mode's difference is the one measured when the golden was written (docs/parity.md).

The masks compared are the golden's sampled rows (`parity.wanda.SAMPLE_ROWS` per linear), the zeros per linear
all of them.
"""

import pytest

from parity import wanda as pw
from parity.harness import load_golden

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def golden():
    return load_golden(pw.NAME, pw.SCRIPT)["outputs"]


@pytest.fixture(scope="module")
def tokens(golden):
    return pw.load_tokens()


def pruned(model, ids, method, inputs, ppl_ids=None, blocks=None):
    """headwise's weights after pruning (and the perplexity when ppl_ids are given); the model is restored."""
    pruner, _ = pw.headwise_prune(model, ids, method, inputs, blocks=blocks)
    try:
        return pw.block_weights(model), (pw.ppl(model, ppl_ids) if ppl_ids is not None else None)
    finally:
        pruner.restore()


def sampled_agreement(ours: dict, run: dict, keys=None) -> float:
    keys = keys or list(ours)
    shapes = {k: tuple(w.shape) for k, w in ours.items()}
    theirs = pw.sampled_masks(run, shapes)
    mine = pw.sampled_masks(ours, shapes)
    return pw.agreement({k: mine[k] for k in keys}, {k: theirs[k] for k in keys})[0]


def test_sequential_wanda_gives_the_reference_masks_and_perplexity(smollm2, golden, tokens):
    model, _ = smollm2
    ids, ppl_ids = tokens
    run = golden["runs"]["wanda-50"]
    ours, ppl = pruned(model, ids, "wanda", "sequential", ppl_ids)
    assert sampled_agreement(ours, run) >= 0.999
    zeros = {k: int((w == 0).sum()) for k, w in ours.items()}
    assert zeros == {k: v["zeros"] for k, v in run["layers"].items()}
    assert abs(ppl / run["ppl"] - 1) <= 0.001, (ppl, run["ppl"])


def test_one_shot_wanda_differs_by_the_measured_amount(smollm2, golden, tokens):
    model, _ = smollm2
    ids, _ = tokens
    measured = golden["measured"]["wanda-50/headwise-dense"]
    ours, _ = pruned(model, ids, "wanda", "dense")
    assert sampled_agreement(ours, golden["runs"]["wanda-50"]) == pytest.approx(measured["sampled_agreement"],
                                                                               abs=0.002)

