import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct from the asset cache (`headwise assets fetch`)."""
    from headwise.assets.registry import is_present

    if not is_present("smollm2"):
        pytest.skip("SmolLM2 is not in the asset cache; run `headwise assets fetch`")
    from headwise.models import load_model

    return load_model("smollm2", device="cpu")


def pytest_collection_modifyitems(config, items):
    """Every test that needs the real SmolLM2 (directly or through a fixture built on it, such as emoji-llava)
    carries the `real` marker, so `pytest -m "not real"` is the fast loop on tiny models."""
    for item in items:
        if "smollm2" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real)
