import pytest
from torch import nn

from headwise.errors import UnsupportedModelError
from headwise.heads import layout
from headwise.testing import FAMILIES, VLM_FAMILIES, tiny_model


@pytest.mark.parametrize("family", FAMILIES)
def test_layout_finds_every_head(family):
    model = tiny_model(family)
    lay = layout(model)
    text = model.config.get_text_config()
    assert lay.num_layers == text.num_hidden_layers == 2
    assert lay.num_heads == text.num_attention_heads
    assert lay.num_heads % lay.num_kv_heads == 0
    assert lay.out_weight(0).shape == (text.hidden_size, lay.num_heads * lay.head_dim)
    decoder_params = {id(p) for p in model.get_decoder().parameters()}
    for proj in lay.out_projs:
        assert all(id(p) in decoder_params for p in proj.parameters())


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_vision_tower_is_not_in_the_layout(family):
    model = tiny_model(family)
    lay = layout(model)
    chosen = {id(m) for attn in lay.attentions for m in attn.modules()}
    vision = [m for name, m in model.named_modules() if any(k in name for k in ("vision", "visual", "qformer"))]
    assert vision and not any(id(m) in chosen for m in vision)


def test_unsupported_model_names_class_and_families():
    with pytest.raises(UnsupportedModelError, match=r"Sequential.*supported families: .*llama"):
        layout(nn.Sequential(nn.Linear(2, 2)))


def test_unsupported_transformers_family():
    import transformers as tf

    model = tf.BertModel(tf.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=32))
    with pytest.raises(UnsupportedModelError, match="BertModel"):
        layout(model)


def test_layout_reaches_through_peft():
    peft = pytest.importorskip("peft")
    model = tiny_model("llama")
    wrapped = peft.get_peft_model(model, peft.LoraConfig(target_modules=["o_proj"], r=2))
    lay = layout(wrapped)
    assert lay.num_layers == 2 and type(lay.out_projs[0]).__module__.startswith("peft")
    assert lay.out_weight(1).shape == (32, 32)
