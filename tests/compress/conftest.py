import pytest
import torch

from headwise.compress.calibration import Calibration, block_linears, collect
from headwise.compress.config import CalibConfig
from headwise.testing import ByteTokenizer, tiny_model

TEXT = ("The quick brown fox jumps over the lazy dog. Pruning removes weights; calibration measures inputs. "
        "Wikipedia summaries describe people, places and ideas in a few sentences each. ") * 12


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "text.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


@pytest.fixture
def calibrate(text_file):
    """calibrate(family) -> (tiny model, its calibration statistics on the test text)."""
    def make(family: str, windows: int = 2, seq_len: int = 32, method: str = "wanda", dtype=torch.float32):
        model = tiny_model(family).to(dtype)
        calib = collect(model, ByteTokenizer(), CalibConfig(data=str(text_file), seq_len=seq_len, windows=windows,
                                                            ppl_windows=2, method=method))
        return model, calib
    return make


@pytest.fixture
def tiny_llama(calibrate) -> tuple[torch.nn.Module, Calibration]:
    return calibrate("llama")


@pytest.fixture
def linear_inputs():
    """linear_inputs(model, ids) -> {(block, linear name): [tokens, in_features] inputs on the model as it is},
    recorded by hooks of their own, independently of calibration."""
    @torch.no_grad()
    def record(model, ids):
        inputs, handles = {}, []
        for b, linears in enumerate(block_linears(model)):
            for name, mod in linears:
                handles.append(mod.register_forward_pre_hook(
                    lambda m, a, key=(b, name): inputs.setdefault(key, []).append(a[0].reshape(-1, a[0].shape[-1]))))
        try:
            model(input_ids=ids, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        return {k: torch.cat(v) for k, v in inputs.items()}
    return record
