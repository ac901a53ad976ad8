"""The parity tests read the committed goldens through parity/harness.py at the repository root, on 2 BLAS
threads."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    """Every parity module on 2 BLAS threads, whatever the rest of the suite set (tests/cl's conftest sets 1 for
    the whole session): the Wanda and SparseGPT goldens were made on 2 (parity/wanda.py and llmcompressor.py set
    them, for the references' runs and headwise's alike), and SparseGPT's masks depend on it (docs/parity.md)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
