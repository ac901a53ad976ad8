import pytest
import torch

torch.set_num_threads(2)


def real_model(name: str):
    """A real model from the asset cache, or a skip that says how to fetch it."""
    from headwise.assets.registry import is_present

    if not is_present(name):
        pytest.skip(f"the real model {name!r} is not in the asset cache; run `headwise assets fetch --only {name}`")
    from headwise.models import load_model

    return load_model(name, device="cpu")


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct from the asset cache (`headwise assets fetch`)."""
    return real_model("smollm2")


def pytest_collection_modifyitems(config, items):
    """Every test that needs a real model (directly or through a fixture built on one, such as emoji-llava)
    carries the `real` marker, so `pytest -m "not real"` is the fast loop on tiny models."""
    for item in items:
        if {"smollm2", "gemma3"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real)


@pytest.fixture(scope="session")
def gemma3():
    """The real Gemma 3 270M (base) from the asset cache (`headwise assets fetch --only gemma3-270m`)."""
    return real_model("gemma3-270m")
