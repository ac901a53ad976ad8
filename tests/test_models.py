import pytest
import torch

from headwise.errors import HeadwiseError
from headwise.models import load_model
from headwise.testing import tiny_model


def test_local_folder_with_tokenizer_and_bf16(tmp_path, smollm2):
    tiny_model("llama").save_pretrained(tmp_path)
    smollm2.tokenizer.save_pretrained(tmp_path)
    model, tok = load_model(str(tmp_path), dtype="bfloat16", device="cpu")
    assert model.dtype == torch.bfloat16 and not model.training
    assert tok("hello").input_ids


def test_gguf_file_path(smollm2):
    from headwise.assets.registry import SMOLLM2_GGUF, asset_dir

    model, _ = load_model(str(asset_dir("smollm2") / SMOLLM2_GGUF), device="cpu")
    ids = torch.tensor([[504, 3575, 282, 4649, 314]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, smollm2.model(ids).logits, atol=1e-4)


@pytest.mark.parametrize("bad, message", [
    ("/definitely/missing", "does not exist"),
    ("./missing-model", "does not exist"),
])
def test_bad_paths(bad, message):
    with pytest.raises(HeadwiseError, match=message):
        load_model(bad)


def test_folder_without_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(HeadwiseError, match="holds no model"):
        load_model(str(tmp_path))


def test_folder_with_broken_config(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(HeadwiseError, match="could not load model"):
        load_model(str(tmp_path))


def test_unknown_dtype(tmp_path):
    tiny_model("llama").save_pretrained(tmp_path)
    with pytest.raises(HeadwiseError, match="unknown dtype 'int3'"):
        load_model(str(tmp_path), dtype="int3")


def test_trust_remote_code_is_off_by_default(tmp_path, monkeypatch):
    import transformers as tf

    seen = {}
    real = tf.AutoConfig.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)
    monkeypatch.setattr(tf.AutoConfig, "from_pretrained", spy)
    tiny_model("llama").save_pretrained(tmp_path)
    with pytest.raises(HeadwiseError):  # no tokenizer in the folder
        load_model(str(tmp_path))
    assert seen["trust_remote_code"] is False
