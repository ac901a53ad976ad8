"""parity/wanda.py's shortcut for the first-blocks checks of test_wanda_parity.py, on a tiny model: the one-shot
statistics of the first blocks, gathered without the rest of the dense pass, are the whole pass's, bit for bit
(the golden's first-block figures were measured on the whole pass)."""

import pytest
import torch

from headwise.compress.calibration import Recorder, block_linears, dense_logp
from headwise.testing import tiny_model
from parity import wanda as pw


@pytest.mark.parametrize("hessians", [False, True])
def test_first_blocks_statistics_are_those_of_the_whole_dense_pass(hessians):
    torch.manual_seed(0)
    model = tiny_model("llama")
    ids = torch.randint(0, model.config.vocab_size, (6, 24))
    with Recorder(block_linears(model), hessians) as rec:
        dense_logp(model, ids, 4)
    calib = pw.first_blocks_statistics(model, ids, hessians, 1)
    assert calib.norms[1] == {} and (calib.hessians is None) == (not hessians)
    for name, norm in rec.norms()[0].items():
        assert torch.equal(calib.norms[0][name], norm), name
    for name, h in (rec.hessians()[0] if hessians else {}).items():
        assert torch.equal(calib.hessians[0][name], h), name
