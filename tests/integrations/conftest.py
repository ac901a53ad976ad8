import pytest


@pytest.fixture(scope="session")
def emoji_llava(smollm2):
    """The emoji-llava folder (assembled once from the shipped weights and SmolLM2), for commands that load it."""
    from headwise.testbed.model import emoji_llava_dir

    return emoji_llava_dir()
