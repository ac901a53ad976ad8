"""VCD and PAI against DAMO-NLP-SG/VCD and LALBJ/PAI (goldens from parity/vcd_pai.py): one test per row of
docs/parity.md. headwise's side runs on the same saved logits and pixels."""

import pytest
import torch
from safetensors.torch import load_file

from headwise.vhr import baselines
from headwise.vhr.config import PAIConfig, VCDConfig
from parity.harness import INPUTS, load_golden

TOL = 1e-6  # float32 arithmetic in a different order (top-p's cumsum, softmax of shifted logits)


@pytest.fixture(scope="module")
def inputs():
    return load_file(str(INPUTS / "vcd_pai.safetensors"))


def max_diff(ours: torch.Tensor, golden: list) -> float:
    return (ours - torch.tensor(golden)).abs().max().item()


def test_vcd_next_token_distribution(inputs):
    golden = load_golden("vcd", "vcd_pai.py")["outputs"]
    for case in golden["cases"]:
        ours = torch.stack([baselines.sampling_probs(
            baselines.vcd_logits(inputs["main"][t], inputs["contrast"][t], case["cd_alpha"], case["cd_beta"]),
            case["temperature"], case["top_p"]) for t in range(inputs["main"].shape[0])])
        assert max_diff(ours, case["probs"]) < TOL, case


def test_vcd_noise_schedule_same_seed_same_image(inputs):
    golden = load_golden("vcd", "vcd_pai.py")["outputs"]
    for row in golden["noise"]:
        ours = baselines.diffusion_noise(inputs["pixels"], row["step"], seed=row["seed"])
        assert max_diff(ours, row["pixels"]) < TOL, row["step"]


def test_vcd_defaults():
    golden = load_golden("vcd", "vcd_pai.py")["outputs"]["defaults"]
    cfg = VCDConfig()
    assert (cfg.cd_alpha, cfg.cd_beta, cfg.noise_step) == (golden["cd_alpha"], golden["cd_beta"], golden["noise_step"])


def test_pai_next_token_distribution_and_greedy(inputs):
    golden = load_golden("pai", "vcd_pai.py")["outputs"]
    steps = inputs["main"].shape[0]
    for case in golden["cases"]:
        logits = [baselines.pai_logits(inputs["main"][t], inputs["contrast"][t], case["gamma"]) for t in range(steps)]
        ours = torch.stack([baselines.sampling_probs(x, case["temperature"], case["top_p"]) for x in logits])
        assert max_diff(ours, case["probs"]) < TOL, case
        assert torch.stack(logits).argmax(-1).tolist() == case["greedy"], case


def test_pai_defaults():
    """alpha and the layers are the scripts' defaults; gamma is the README's 1.1 (every command it gives), not the
    argparse default 2 of chair_eval.py and pope_eval.py."""
    golden = load_golden("pai", "vcd_pai.py")["outputs"]["defaults"]
    cfg = PAIConfig()
    for script in ("chair_eval.py", "pope_eval.py"):
        ref = golden[script]
        assert cfg.pai_alpha == ref["alpha"] and (ref["start_layer"], ref["end_layer"]) == (2, 32)
        assert ref["gamma"] == 2 and cfg.pai_gamma == 1.1


def test_pai_attention_boost_on_image_keys():
    """One LLaMA attention layer with the reference's weights: PAI's llama_new_forward against headwise's score
    edit (edit_attention_scores with pai_boost), for each alpha, and with no boost."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from headwise.heads import edit_attention_scores

    golden = load_golden("pai", "vcd_pai.py")["outputs"]["attention"]
    weights = load_file(str(INPUTS / "pai_attention.safetensors"))
    hidden = weights["hidden_states"]
    size, n = hidden.shape[-1], hidden.shape[1]
    config = LlamaConfig(hidden_size=size, num_attention_heads=4, num_key_value_heads=4, num_hidden_layers=1,
                         intermediate_size=2 * size, vocab_size=16)
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config).eval()
    attn = model.model.layers[0].self_attn
    for name in "qkvo":
        getattr(attn, f"{name}_proj").weight.data.copy_(weights[f"{name}_proj"])
    position = model.model.rotary_emb(hidden, torch.arange(n)[None])
    mask = torch.full((n, n), torch.finfo(torch.float32).min).triu(1)[None, None]
    image_keys = torch.zeros(1, n, dtype=torch.bool)
    image_keys[:, 3:8] = True  # parity/vcd_pai.py's ATTENTION_SHAPE["image"]
    with torch.no_grad():
        assert max_diff(attn(hidden, position, mask)[0], golden["off"]) < TOL
        for alpha in ("0.2", "0.5", "1.0"):
            with edit_attention_scores(model, [0], lambda s, layer, a=float(alpha): baselines.pai_boost(s, image_keys, a)):
                assert max_diff(attn(hidden, position, mask)[0], golden[alpha]) < TOL, alpha
