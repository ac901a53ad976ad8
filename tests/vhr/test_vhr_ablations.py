"""Issue 14, section 2: VHR's ablation switches heads=random|complement and positions=generated."""

import pytest
import torch

from headwise.errors import HeadwiseError
from headwise.heads import capture_heads, layout
from headwise.testing_vlm import test_image, tiny_vlm
from headwise.vhr import VHRConfig, generate
from headwise.vhr.core import draw_heads
from headwise.vhr.inputs import encode, to_device

PROMPT = "describe the image ."


def test_draw_heads_counts_and_pools():
    pick = torch.tensor([[True, False, True, False, False, False], [False] * 5 + [True]])
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(draw_heads(pick, "vhd", gen), pick)
    for _ in range(20):
        rnd = draw_heads(pick, "random", gen)
        comp = draw_heads(pick, "complement", gen)
        assert rnd.sum(-1).tolist() == comp.sum(-1).tolist() == [2, 1]
        assert not (comp & pick).any()
    seen = {tuple(draw_heads(pick, "random", gen)[0].nonzero().flatten().tolist()) for _ in range(30)}
    assert len(seen) > 3  # really drawn, not a fixed subset
    full = torch.tensor([[True, True, True, False]])
    assert draw_heads(full, "complement", gen).tolist() == [[False, False, False, True]]  # only one is left out


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "idefics3"])
def test_random_and_complement_heads_keep_vhd_counts_per_layer_and_sample(family):
    model, proc = tiny_vlm(family)
    imgs = [test_image(1), test_image(2)]
    layers = list(range(layout(model).num_layers))
    # alpha 1 changes no state, so VHD's own choice is the same in every run and can be compared
    runs = {h: generate(model, proc, imgs, PROMPT, VHRConfig(alpha=1.0, layers=layers, heads=h), max_new_tokens=2)
            for h in ("vhd", "random", "complement")}
    vhd = runs["vhd"].heads
    assert vhd.any()
    assert torch.equal(runs["random"].heads.sum(-1), vhd.sum(-1))
    assert torch.equal(runs["complement"].heads.sum(-1), vhd.sum(-1))
    assert not (runs["complement"].heads & vhd).any()
    again = generate(model, proc, imgs, PROMPT, VHRConfig(alpha=1.0, layers=layers, heads="random"),
                     max_new_tokens=2)
    assert torch.equal(again.heads, runs["random"].heads)  # drawn with the seed
    other = generate(model, proc, imgs, PROMPT, VHRConfig(alpha=1.0, layers=layers, heads="random"), seed=1,
                     max_new_tokens=2)
    assert not torch.equal(other.heads, runs["random"].heads)


def _prompt_positions_untouched(model, proc, positions: str) -> tuple[float, float]:
    """Largest change, against the plain model, of the image row's head outputs at the prompt positions
    (all but the last) and at the last one, over the layers after the first reinforced layer."""
    img = test_image(3)
    plain = to_device(encode(model, proc, [img], [PROMPT]), model)
    with torch.no_grad(), capture_heads(model) as cap:
        model(**plain)
        base = {layer: out.clone() for layer, out in cap.outputs.items()}
    with capture_heads(model, history=True) as cap:
        generate(model, proc, [img], PROMPT, VHRConfig(alpha=3.0, layers=[0, 1], positions=positions),
                 max_new_tokens=3)
    prompt_change = last_change = 0.0
    prefills = [i for i, out in enumerate(cap.history[1]) if out.shape[1] > 1]
    for layer in range(1, layout(model).num_layers):
        for i in prefills:  # the lockstep, and the second prefill where the cache is not carried
            seen = cap.history[layer][i][0]
            prompt_change = max(prompt_change, (seen[:-1] - base[layer][0, :-1]).abs().max().item())
            last_change = max(last_change, (seen[-1] - base[layer][0, -1]).abs().max().item())
    return prompt_change, last_change


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "instructblip"])
def test_generated_positions_leave_image_and_prompt_positions_untouched(family):
    model, proc = tiny_vlm(family)
    prompt_change, last_change = _prompt_positions_untouched(model, proc, "generated")
    assert prompt_change <= 1e-5 and last_change > 1e-3
    prompt_change, last_change = _prompt_positions_untouched(model, proc, "all")
    assert prompt_change > 1e-3 and last_change > 1e-3  # the default does scale them: the check can fail


def test_generated_positions_at_alpha_one_are_greedy_one_position_per_step():
    model, proc = tiny_vlm("llava")
    img = test_image(4)
    greedy = generate(model, proc, [img], PROMPT, method="greedy", max_new_tokens=6)
    same = generate(model, proc, [img], PROMPT, VHRConfig(alpha=1.0, positions="generated"), max_new_tokens=6)
    assert torch.equal(greedy.sequences, same.sequences)
    with capture_heads(model, layers=[1], history=True) as cap:
        generate(model, proc, [img], PROMPT, VHRConfig(alpha=3.0, layers=[0], positions="generated"),
                 max_new_tokens=4)
    steps = [out for out in cap.history[1] if out.shape[1] == 1]
    assert len(steps) == 4  # the recomputed last prompt position, then three decoded tokens, each one position


def test_bad_ablation_values():
    model, proc = tiny_vlm("llava")
    with pytest.raises(HeadwiseError, match="unknown heads 'best'; choose one of vhd, random, complement"):
        generate(model, proc, [test_image(0)], PROMPT, VHRConfig(heads="best"))
    with pytest.raises(HeadwiseError, match="unknown positions 'prompt'"):
        VHRConfig(positions="prompt")
    with pytest.raises(HeadwiseError, match=r"positions is vhr's option: pass VHRConfig\(positions=...\)"):
        generate(model, proc, [test_image(0)], PROMPT, method="greedy", positions="generated")


@pytest.mark.parametrize("command, option, value", [
    (["vhr", "describe", "--model", "tiny", "--image", "x.png"], "--heads", "best"),
    (["eval", "chair", "--model", "tiny", "--images", ".", "--annotations", "."], "--positions", "prompt"),
    (["eval", "pope", "--model", "tiny", "--images", ".", "--questions", "q.jsonl"], "--heads", "all"),
    (["testbed", "evaluate", "--out", "never-written"], "--positions", "image"),
])
def test_cli_bad_ablation_values_exit_2(command, option, value, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "headwise.cli", *command, option, value], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"'{value}'" in proc.stderr and "choose one of" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "never-written").exists()
