"""parity/wanda.py's shortcut for the first-blocks checks of test_wanda_parity.py, on a tiny model: the one-shot
statistics of the first blocks, gathered without the rest of the dense pass, are the whole pass's, bit for bit
(the golden's first-block figures were measured on the whole pass)."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from headwise.compress.calibration import Recorder, block_linears, dense_logp
from parity import wanda as pw


@pytest.mark.parametrize("blocks", [1, 2])
@pytest.mark.parametrize("hessians", [False, True])
def test_first_blocks_statistics_are_those_of_the_whole_dense_pass(hessians, blocks):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                         num_attention_heads=4, num_key_value_heads=2)).eval()
    layers = len(block_linears(model))
    assert layers > blocks  # some blocks are left out, or the shortcut is not tested
    ids = torch.randint(0, model.config.vocab_size, (6, 24))
    with Recorder(block_linears(model), hessians) as rec:
        dense_logp(model, ids, 4)
    calib = pw.first_blocks_statistics(model, ids, hessians, blocks)
    assert (calib.hessians is None) == (not hessians)
    for b in range(layers):
        if b >= blocks:
            assert calib.norms[b] == {} and (not hessians or calib.hessians[b] == {})
            continue
        whole = [rec.norms()[b]] + ([rec.hessians()[b]] if hessians else [])
        first = [calib.norms[b]] + ([calib.hessians[b]] if hessians else [])
        for a, c in zip(whole, first):
            assert a and set(a) == set(c), (b, set(a), set(c))
            assert all(torch.equal(a[name], c[name]) for name in a), b
