"""VCD and PAI parity: the reference's logit combination, plausibility cut-off, noise schedule and defaults.

    .venv/bin/python parity/vcd_pai.py            # writes parity/goldens/vcd.json and pai.json
    .venv/bin/python parity/vcd_pai.py --inputs   # rebuilds parity/inputs/vcd_pai.safetensors (seeded)

Both references run in one venv with VCD's pins (transformers 4.31.0; torch 2.13.0 CPU stands in for 2.0.1,
whose wheel is not for this Python). The inputs are random logits of two streams (clean or image, and noised or
text-only) over a few steps, and a random "pixel_values" tensor; headwise's side is computed from the same file
by tests/parity/test_vcd_pai_parity.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

VCD_REPO, VCD_COMMIT = "DAMO-NLP-SG/VCD", "d6568ff81b8fd306a49e630df44f2db5c2300191"
PAI_REPO, PAI_COMMIT = "LALBJ/PAI", "9bbd8bd57a0b0923f996197e4bd3e02cc10b8d58"
INPUT = harness.INPUTS / "vcd_pai.safetensors"
ATTENTION = harness.INPUTS / "pai_attention.safetensors"  # one LLaMA attention layer's weights and hidden states
ATTENTION_SHAPE = {"hidden": 32, "heads": 4, "tokens": 12, "image": [3, 8]}  # image keys: [3, 8)
PAI_ALPHAS = [0.2, 0.5, 1.0]
REQUIREMENTS = ["numpy", "torch==2.13.0", "transformers==4.31.0"]

# (cd_alpha, cd_beta, temperature, top_p): VCD's script defaults first, then the POPE script's beta and a nucleus.
VCD_CASES = [(1.0, 0.1, 1.0, 1.0), (1.0, 0.2, 1.0, 1.0), (0.5, 0.1, 0.7, 0.9), (2.0, 0.5, 1.3, 0.5)]
# (gamma, temperature, top_p): the README's 1.1, chair_eval.py's default 2, gamma 1 (no contrast), a nucleus.
PAI_CASES = [(1.1, 1.0, 1.0), (2.0, 1.0, 1.0), (1.0, 1.0, 1.0), (1.1, 0.7, 0.9)]
NOISE_STEPS, NOISE_SEED = [0, 250, 500, 999], 1234


def build_inputs() -> None:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(26)
    steps, batch, vocab = 3, 2, 64
    tensors = {"main": 3 * torch.randn(steps, batch, vocab, generator=g),
               "contrast": 3 * torch.randn(steps, batch, vocab, generator=g),
               "pixels": torch.randn(1, 3, 16, 16, generator=g)}
    INPUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(INPUT))
    print(f"wrote {INPUT.relative_to(harness.ROOT)}")
    hidden, tokens = ATTENTION_SHAPE["hidden"], ATTENTION_SHAPE["tokens"]
    weights = {f"{name}_proj": torch.randn(hidden, hidden, generator=g) / hidden ** 0.5 for name in "qkvo"}
    save_file(weights | {"hidden_states": torch.randn(1, tokens, hidden, generator=g)}, str(ATTENTION))
    print(f"wrote {ATTENTION.relative_to(harness.ROOT)}")


def main() -> None:
    if "--inputs" in sys.argv or not INPUT.is_file() or not ATTENTION.is_file():
        build_inputs()
    vcd = harness.repo_at(VCD_REPO, VCD_COMMIT, ["vcd_utils", "experiments/eval/object_hallucination_vqa_llava.py"])
    pai = harness.repo_at(PAI_REPO, PAI_COMMIT, ["CFG.py", "attention.py", "chair_eval.py", "pope_eval.py"])
    py = harness.venv("vcd_pai", REQUIREMENTS)
    common = {"input": str(INPUT)}
    out = harness.run_in(py, "vcd", common | {"repo": str(vcd), "cases": VCD_CASES, "noise_steps": NOISE_STEPS,
                                               "noise_seed": NOISE_SEED})
    harness.write_golden(
        "vcd", {"repo": VCD_REPO, "commit": VCD_COMMIT, "packages": REQUIREMENTS, "script": "vcd_pai.py",
                "files": ["vcd_utils/vcd_sample.py:150-161 (cut-off, combination, warpers, softmax)",
                          "vcd_utils/vcd_add_noise.py:3-28 (noise schedule)",
                          "experiments/eval/object_hallucination_vqa_llava.py:115-118 (defaults)"]},
        [INPUT],
        ["vcd_sample.sample runs unchanged on a stand-in model that returns the input logits of the clean stream, "
         "then of the noised stream, at each step (prepare_inputs_for_generation(_cd), "
         "_update_model_kwargs_for_generation and generation_config are stand-ins too); torch.multinomial is "
         "wrapped to record the distribution it is handed and return its argmax, so the recorded distributions "
         "are exactly the ones VCD samples from.",
         "the logits_warper list is built as transformers 4.31's generate() builds it for do_sample with that "
         "temperature and top_p (TemperatureLogitsWarper, TopPLogitsWarper, each only when not 1.0); "
         "logits_processor is empty, as VCD's LLaVA script asks for no processor.",
         "add_diffusion_noise runs unchanged after torch.manual_seed(noise_seed) (it draws from torch's global "
         "generator with randn_like).",
         "the defaults are read with ast from the argparse calls of object_hallucination_vqa_llava.py.",
         "torch 2.13.0 (CPU) instead of VCD's pin 2.0.1, which has no wheel for this Python."],
        out)

    out = harness.run_in(py, "pai", common | {"repo": str(pai), "cases": PAI_CASES, "attention": str(ATTENTION),
                                               "shape": ATTENTION_SHAPE, "alphas": PAI_ALPHAS})
    harness.write_golden(
        "pai", {"repo": PAI_REPO, "commit": PAI_COMMIT, "packages": REQUIREMENTS, "script": "vcd_pai.py",
                "files": ["CFG.py:28-58 (CFGLogits: log-softmax, cut-off, combination)",
                          "attention.py:10-117 (llama_new_forward; the boost at 90-94)",
                          "chair_eval.py:50-55 (defaults)"]},
        [INPUT, ATTENTION],
        ["CFGLogits.__call__ runs unchanged; its `model` is a stand-in whose call returns the input logits of the "
         "text-only stream at each step (and whose model.layers[i].self_attn takes the use_cfg flags), so "
         "`uncond` is a placeholder; the image stream's logits are the `scores` argument.",
         "the sampling distribution is softmax over the warpers transformers 4.31's generate() adds for that "
         "temperature and top_p, applied after CFGLogits as generate() orders them; greedy is its argmax.",
         "llama_new_forward runs unchanged, bound by llama_modify to a transformers 4.31 LlamaAttention with the "
         "saved q/k/v/o weights (no bias, rope base 10000), on the saved hidden states with position ids 0..n-1 "
         "and the additive causal mask 4.31 builds; its attention output is recorded for each alpha, and with "
         "use_attn off.",
         "the defaults are read with ast from the argparse calls of chair_eval.py and pope_eval.py.",
         "transformers 4.31.0 and torch 2.13.0 instead of PAI's pins 4.37.0 and 2.0.1: CFG.py uses only "
         "LogitsProcessor and torch.nn.functional."],
        out)


if __name__ == "__main__":
    main()
