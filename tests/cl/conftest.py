import pytest
import torch

from cl_helpers import TinyTokenizer, write_trace


@pytest.fixture
def tok():
    return TinyTokenizer()


@pytest.fixture
def trace_dir(tmp_path):
    return write_trace(tmp_path / "bench")


torch.set_num_threads(1)
