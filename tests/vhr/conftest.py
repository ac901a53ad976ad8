import pytest

from headwise.testing_vlm import VLM_FAMILIES, tiny_vlm


@pytest.fixture(scope="module", params=VLM_FAMILIES)
def vlm(request):
    """(family, model, processor) of a tiny VLM, once per test module and family."""
    model, processor = tiny_vlm(request.param)
    return request.param, model, processor
