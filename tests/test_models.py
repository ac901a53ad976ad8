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


# A mistyped model name (issue 16): neither an alias, a path nor a cached hub model.
def test_typo_fails_at_once_when_the_hub_is_off(monkeypatch):
    import huggingface_hub as hub

    monkeypatch.setattr(hub.constants, "is_offline_mode", lambda: True)
    monkeypatch.setattr(hub, "model_info", lambda *a, **k: pytest.fail("asked the hub while offline"))
    with pytest.raises(HeadwiseError) as err:
        load_model("smolm2")
    assert str(err.value) == ("model 'smolm2' is not an alias (smollm2, gemma3-270m, emoji-llava), a local path or a cached hub "
                              "model, and the hub is off (HF_HUB_OFFLINE); did you mean smollm2?")


def test_typo_with_no_hub_reachable_is_one_line_and_exit_2():
    """Not offline, but the hub's address refuses connections: one request, no retries, no log lines."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    proc = subprocess.run([sys.executable, "-m", "headwise.cli", "heads", "show", "--model", "smolm2"],
                          capture_output=True, text=True, timeout=120, env=env | {"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Retry" not in proc.stderr, proc.stderr
    assert "the hub at http://127.0.0.1:9 cannot be reached" in proc.stderr
    assert proc.stderr.rstrip().endswith("did you mean smollm2?")


def test_hub_ids_still_go_to_the_hub(monkeypatch):
    """Online, an id the hub knows is handed to transformers; one it does not know fails in one sentence."""
    import huggingface_hub as hub
    from huggingface_hub import errors

    from headwise.models import _resolve

    monkeypatch.setattr(hub.constants, "is_offline_mode", lambda: False)
    asked = []
    monkeypatch.setattr(hub, "model_info", lambda name, timeout: asked.append((name, timeout)))
    assert _resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == ("HuggingFaceTB/SmolLM2-135M-Instruct", None)
    assert asked == [("HuggingFaceTB/SmolLM2-135M-Instruct", 5.0)]

    def missing(name, timeout):
        raise errors.RepositoryNotFoundError.__new__(errors.RepositoryNotFoundError)
    monkeypatch.setattr(hub, "model_info", missing)
    with pytest.raises(HeadwiseError, match="has no such model .* did you mean emoji-llava"):
        _resolve("emoji-lava")
    with pytest.raises(HeadwiseError, match=r"not a valid hub id\.$"):
        _resolve("no such model")


def test_a_cached_hub_model_loads_offline(tmp_path):
    """The hub cache counts as local: with HF_HUB_OFFLINE=1 a cached id loads without asking anyone."""
    import json
    import os
    import subprocess
    import sys

    repo = tmp_path / "hub" / "models--someone--tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    tiny_model("qwen2").save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    proc = subprocess.run([sys.executable, "-m", "headwise.cli", "heads", "show", "--model", "someone/tiny", "--json"],
                          capture_output=True, text=True, timeout=120,
                          env=os.environ | {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["num_kv_heads"] == 2


def _future_warnings(fn):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # pyproject's filterwarnings hides FutureWarning otherwise
        fn()
    return [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]


def test_lora_wrapping_prints_no_future_warning():
    """The demo printed transformers' `is_gradient_checkpointing` FutureWarning: peft reads that deprecated
    property when it wraps a model. headwise wraps through models.get_peft_model, which silences only that one."""
    import peft

    from headwise.models import get_peft_model

    def config():
        return peft.LoraConfig(r=2, target_modules="all-linear", lora_dropout=0.0)
    plain = _future_warnings(lambda: peft.get_peft_model(tiny_model("llama"), config()))
    assert any("is_gradient_checkpointing" in w for w in plain)  # the source: peft's call, as installed here
    assert _future_warnings(lambda: get_peft_model(tiny_model("llama"), config())) == []


def test_emoji_llava_adapter_prints_no_future_warning():
    from headwise.testbed import model as tbm
    from headwise.testing_vlm import tiny_vlm

    assert _future_warnings(lambda: tbm.with_adapter(tiny_vlm("llava")[0])) == []


def test_every_lora_wrap_goes_through_headwise_models():
    """One mechanism: a module that calls peft.get_peft_model directly would print the warning again in
    `headwise demo` (cl's SEEKR part wraps SmolLM2 in LoRA). Fails until cl/trainer.py uses headwise.models'."""
    import ast
    from pathlib import Path

    import headwise

    root = Path(headwise.__file__).parent
    direct = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "peft" and \
                    any(a.name == "get_peft_model" for a in node.names) and path.name != "models.py":
                direct.append(str(path.relative_to(root)))
    assert direct == []
