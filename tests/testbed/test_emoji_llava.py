"""The shipped emoji-llava: it loads as an ordinary transformers model, captions scenes, and takes real photos."""

import subprocess
import sys

import pytest
import torch

from headwise.testbed.model import shipped_weights


@pytest.fixture(scope="module")
def emoji_llava(smollm2):
    from headwise.models import load_model

    return load_model("emoji-llava", device="cpu")


def test_weights_are_small():
    assert shipped_weights().stat().st_size <= 25_000_000


def test_loads_and_captions_a_scene(emoji_llava):
    from headwise.testbed.scenes import render, sample_scene
    from headwise.vhr import generate

    model, proc = emoji_llava
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    scene = sample_scene(11, 0)
    out = generate(model, proc, [render(scene)], "Please describe this image in detail.", method="greedy",
                   max_new_tokens=64)
    assert out.texts[0].strip()


def test_vhr_alpha_one_is_greedy_on_the_real_model(emoji_llava):
    from headwise.testbed.scenes import render, sample_scene
    from headwise.vhr import VHRConfig, generate

    model, proc = emoji_llava
    img = render(sample_scene(11, 1))
    greedy = generate(model, proc, [img], "Please describe this image in detail.", method="greedy", max_new_tokens=24)
    vhr = generate(model, proc, [img], "Please describe this image in detail.", VHRConfig(alpha=1.0),
                   max_new_tokens=24)
    assert torch.equal(greedy.sequences, vhr.sequences)
    assert vhr.heads.sum(-1)[0, 1].item() == 4  # 9 heads: the 4 strictly above the median


@pytest.mark.parametrize("photo", ["astronaut", "chelsea", "coffee", "stereo_motorcycle"])
def test_real_photos_go_through_vhr_describe(emoji_llava, photo, tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    pixels = getattr(skimage_data, photo)()
    pixels = pixels[0] if isinstance(pixels, tuple) else pixels
    path = tmp_path / f"{photo}.png"
    Image.fromarray(pixels).convert("RGB").save(path)
    proc = subprocess.run([sys.executable, "-m", "headwise.cli", "vhr", "describe", "--model", "emoji-llava", "--image",
                           str(path), "--max-new-tokens", "24"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_merged_adapter_equals_the_trained_peft_model(emoji_llava):
    """build() merges LoRA into SmolLM2's weights; the result must compute what the adapter model computed."""
    from safetensors.torch import load_file

    from headwise.testbed import model as tbm
    from headwise.testbed.scenes import render, sample_scene

    merged, proc = emoji_llava
    peft_model = tbm.with_adapter(tbm.fresh()[0])
    tbm.load_trained(peft_model, load_file(shipped_weights()))
    inputs = proc(text=[proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text",
                  "text": "Please describe this image in detail."}]}], add_generation_prompt=True, tokenize=False)],
                  images=[render(sample_scene(11, 2))], return_tensors="pt")
    with torch.no_grad():
        want = peft_model(**inputs).logits
        got = merged(**inputs).logits
    assert (want - got).abs().max() < 1e-3
