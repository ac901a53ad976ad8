"""The N:M sparsity pattern (`CalibConfig.pattern`): Wanda's masks against locuslab/wanda's rule, the invariant
(exactly n zeros in every group of m consecutive inputs of a row), `compress prune`, and bad input."""

import json

import pytest
import torch
from typer.testing import CliRunner

from headwise.cli.compress import app
from headwise.compress.calibration import block_linears
from headwise.compress.config import CalibConfig, FitConfig, nm_pattern
from headwise.compress.fit import check_config
from headwise.compress.run import open_prune_run, run_prune
from headwise.compress.unstructured import check_pattern
from headwise.compress.wanda import WandaPruner
from headwise.errors import HeadwiseError
from headwise.testing import ByteTokenizer, tiny_model


def out_in(mod) -> torch.Tensor:
    return mod.weight.t() if type(mod).__name__ == "Conv1D" else mod.weight


def reference_nm_mask(weight_out_in, inputs, n, m):
    """locuslab/wanda lib/prune.py:169-174: metric |W| * sqrt(sum of squared inputs); in every group of m columns,
    the n smallest by torch.topk(largest=False)."""
    metric = weight_out_in.abs() * inputs.pow(2).sum(0).sqrt()[None, :]
    mask = torch.zeros_like(metric, dtype=torch.bool)
    for ii in range(0, metric.shape[1], m):
        mask.scatter_(1, ii + torch.topk(metric[:, ii:ii + m].float(), n, dim=1, largest=False)[1], True)
    return mask


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("pattern", ["2:4", "1:4", "3:8"])
def test_wanda_nm_masks_are_the_references(family, pattern, calibrate, linear_inputs):
    n, m = nm_pattern(pattern)
    model, calib = calibrate(family)
    inputs = linear_inputs(model, calib.ids)
    dense = {(b, name): out_in(mod).detach().clone()
             for b, linears in enumerate(block_linears(model)) for name, mod in linears}
    # The ratios do not matter under N:M (any ratio above 0 prunes n of m), a zero ratio leaves a block dense.
    achieved = WandaPruner(model, calib.norms, pattern=pattern).apply([0.3, 0.0])
    assert achieved == pytest.approx(n / m / 2)
    for b, linears in enumerate(block_linears(model)):
        for name, mod in linears:
            w = out_in(mod)
            if b == 1:
                assert torch.equal(w, dense[(b, name)])
                continue
            assert torch.equal((w == 0) & (dense[(b, name)] != 0),
                               reference_nm_mask(dense[(b, name)], inputs[(b, name)], n, m)), (b, name)
            assert ((w == 0).reshape(len(w), -1, m).sum(-1) == n).all()


def test_prune_applies_the_pattern_and_records_it(tmp_path, text_file):
    model = tiny_model("llama")
    cfg = CalibConfig(data=str(text_file), seq_len=32, windows=2, ppl_windows=2, pattern="2:4")
    run = open_prune_run(tmp_path / "p", "tiny", "float32", cfg, 0.5, False)
    result = run_prune(model, ByteTokenizer(), cfg, 0.5, run)
    assert result["sparsity"] == pytest.approx(0.5) and result["kl"] > 0
    recorded = json.loads(run.path("results.json").read_text())
    assert recorded["config"]["calibration"]["pattern"] == "2:4"
    assert all(torch.equal(out_in(mod), out_in(dense))
               for (_, mod), (_, dense) in zip(sum(block_linears(model), []),
                                               sum(block_linears(tiny_model("llama")), [])))  # restored


@pytest.mark.parametrize("pattern", ["3:2", "2:2", "0:4", "2-4", "two:four", "2:4:8"])
def test_bad_patterns_are_one_sentence(pattern):
    with pytest.raises(HeadwiseError, match="unknown sparsity pattern"):
        CalibConfig(pattern=pattern)
    result = CliRunner().invoke(app, ["prune", "--model", "smollm2", "--pattern", pattern])
    assert isinstance(result.exception, HeadwiseError) and "unknown sparsity pattern" in str(result.exception)


def test_widths_that_m_does_not_divide_sparsity_that_contradicts_n_m_and_fit_are_refused():
    with pytest.raises(HeadwiseError, match="divisible by 5, but block 0 linear"):
        check_pattern(tiny_model("llama"), "2:5")
    result = CliRunner().invoke(app, ["prune", "--model", "smollm2", "--pattern", "2:4", "--sparsity", "0.3"])
    assert isinstance(result.exception, HeadwiseError) and "prunes exactly 0.5" in str(result.exception)
    result = CliRunner().invoke(app, ["prune", "--model", "smollm2"])
    assert isinstance(result.exception, HeadwiseError) and "--sparsity must be given" in str(result.exception)
    with pytest.raises(HeadwiseError, match="no per-block ratios to fit"):
        check_config(FitConfig(), CalibConfig(pattern="2:4"))
