import pytest
import torch

from headwise.compress.calibration import Calibration, collect
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
    def make(family: str, windows: int = 2, seq_len: int = 32):
        model = tiny_model(family)
        calib = collect(model, ByteTokenizer(), CalibConfig(data=str(text_file), seq_len=seq_len, windows=windows,
                                                            ppl_windows=2))
        return model, calib
    return make


@pytest.fixture
def tiny_llama(calibrate) -> tuple[torch.nn.Module, Calibration]:
    return calibrate("llama")
