"""`headwise testbed train` on a few steps of the real SmolLM2: all three stages, resume, and --init."""

import subprocess
import sys

import pytest
import torch

from headwise.errors import HeadwiseError
from headwise.testbed import model as tbm
from headwise.testbed import train as tr

TINY = dict(vision_steps=2, vision_batch=4, caption_steps=2, caption_batch=2, answer_steps=2, checkpoint_every=1)


@pytest.fixture(scope="module")
def trained(smollm2, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    return out, tr.train(out, tr.TrainConfig(**TINY), progress=False)


def _weights(path):
    from safetensors.torch import load_file

    return load_file(path)


def test_all_stages_run_and_the_weights_build_a_model(trained, tmp_path):
    out, result = trained
    assert {"vision_final_loss", "caption_final_loss", "answer_final_loss"} <= set(result)
    for name in ("vision.ckpt", "caption.ckpt", "answer.ckpt"):
        assert (out / name).is_file()
    state = _weights(result["weights"])
    assert any("lora_A" in k for k in state) and any("multi_modal_projector" in k for k in state)
    assert tbm.build(weights=out / "emoji_llava.safetensors", out=tmp_path / "model").is_dir()


def test_rerun_resumes_from_the_checkpoints_and_changes_nothing(trained):
    out, result = trained
    again = tr.train(out, tr.TrainConfig(**TINY), progress=False)
    first, second = _weights(result["weights"]), _weights(again["weights"])
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_init_skips_to_stage_three_and_moves_only_projector_and_adapter(trained, tmp_path):
    out, result = trained
    cont = tr.train(tmp_path / "cont", tr.TrainConfig(**{**TINY, "answer_steps": 1}, init=result["weights"]),
                    progress=False)
    assert "vision_final_loss" not in cont and not (tmp_path / "cont" / "vision.ckpt").exists()
    before, after = _weights(result["weights"]), _weights(cont["weights"])
    assert set(before) == set(after)
    assert all(torch.equal(before[k], after[k]) for k in before if "vision_tower" in k)
    assert any(not torch.equal(before[k], after[k]) for k in before if "lora_B" in k)


def test_per_example_loss_equals_the_token_mean_when_answers_have_the_same_length(smollm2):
    """Stage 3 weighs examples, not tokens; with equal answer lengths the two must agree."""
    model, proc = tbm.fresh()
    peft_model = tr._adapter(model)
    from headwise.testbed.scenes import sample_scene

    scenes = [sample_scene(1000, i, tbm.IMAGE_SIZE) for i in range(3)]
    import random

    batch = tr._caption_batch(proc, scenes, random.Random(0), qa_fraction=1.0)  # all "Yes." / "No.": 3 tokens each
    with torch.no_grad():
        token_mean = tr._loss(peft_model, batch, per_sample=False)
        per_example = tr._loss(peft_model, batch, per_sample=True)
    assert torch.allclose(token_mean, per_example, rtol=1e-4)


def test_prompts_are_left_padded_from_the_first_batch(smollm2):
    """Padding between prompt and answer would teach answers after pad tokens; a fresh tokenizer pads right."""
    import random

    from headwise.testbed.scenes import sample_scene

    _, proc = tbm.fresh()
    scenes = [sample_scene(1000, i, tbm.IMAGE_SIZE) for i in range(6)]
    batch = tr._caption_batch(proc, scenes, random.Random(3), qa_fraction=0.5)
    prompt_lengths = set()
    for mask, labels in zip(batch["attention_mask"], batch["labels"]):
        first = int((labels != -100).nonzero()[0])
        prompt_lengths.add(int(mask[:first].sum()))
        assert mask[first - 1] == 1 and torch.all(mask[:first].diff() >= 0)  # zeros only at the row's start
    assert len(prompt_lengths) > 1  # the batch did need padding


@pytest.mark.parametrize("content, words", [(None, "not a file"), (b"not safetensors", "not a readable safetensors"),
                                             ("empty", "holds no model.vision_tower")])
def test_bad_init_is_one_sentence_and_exit_2(tmp_path, content, words):
    init = tmp_path / "w.safetensors"
    if content == "empty":
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(1)}, str(init))
    elif content is not None:
        init.write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "headwise.cli", "testbed", "train", "--out", str(tmp_path / "r"),
                           "--init", str(init)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_trained_weights_load_as_a_model_by_their_file(trained):
    """`--model OUT/emoji_llava.safetensors`: assembled once into its own cache folder, the default untouched."""
    import shutil

    from headwise.models import load_model

    out, result = trained
    model, _ = load_model(str(result["weights"]))
    folder = tbm.emoji_llava_dir(result["weights"])
    try:
        assert folder.name.startswith("emoji-llava-") and folder != tbm.emoji_llava_dir()
        state = _weights(result["weights"])
        key = next(k for k in state if "multi_modal_projector" in k)
        assert torch.equal(dict(model.named_parameters())[key].detach(), state[key].float())
        stamp = (folder / "config.json").stat().st_mtime_ns
        assert tbm.emoji_llava_dir(result["weights"]) == folder  # built once
        assert (folder / "config.json").stat().st_mtime_ns == stamp
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("kind, words", [("foreign", "holds no model.vision_tower"),
                                         ("wrong shape", "does not match this model")])
def test_unusable_weights_as_model_are_one_sentence_and_exit_2(tmp_path, kind, words):
    from PIL import Image
    from safetensors.torch import load_file, save_file

    weights, image = tmp_path / "other.safetensors", tmp_path / "a.png"
    state = {"x": torch.zeros(1)}
    if kind == "wrong shape":
        state = load_file(tbm.shipped_weights())
        key = next(k for k in state if "multi_modal_projector" in k)
        state[key] = torch.zeros(3, 3, dtype=state[key].dtype)
    save_file(state, str(weights))
    Image.new("RGB", (8, 8)).save(image)
    proc = subprocess.run([sys.executable, "-m", "headwise.cli", "vhr", "describe", "--model", str(weights),
                           "--image", str(image)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr


def test_killed_mid_stage_resumes_from_the_last_checkpoint_without_redoing_steps(trained, tmp_path, monkeypatch):
    """Stopped inside stage 2 after its step-0 checkpoint: the rerun trains no vision step and no step 0 of stage 2,
    and (data depending only on the step) ends with the weights of the uninterrupted run."""
    _, uninterrupted = trained
    steps, real_scene = [], tr._scene

    def scene(step, i, batch, stream):
        if i == 0:
            if (stream, step) == (1, 1) and not steps_resumed:
                raise KeyboardInterrupt  # as Ctrl-C or a kill between two checkpoints would stop it
            steps.append((stream, step))
        return real_scene(step, i, batch, stream)

    steps_resumed = False
    monkeypatch.setattr(tr, "_scene", scene)
    with pytest.raises(KeyboardInterrupt):
        tr.train(tmp_path, tr.TrainConfig(**TINY), progress=False)
    assert steps == [(0, 0), (0, 1), (1, 0)] and (tmp_path / "caption.ckpt").is_file()
    assert torch.load(tmp_path / "caption.ckpt", weights_only=True)["step"] == 1
    steps.clear()
    steps_resumed = True
    result = tr.train(tmp_path, tr.TrainConfig(**TINY), progress=False)
    assert steps == [(1, 1), (2, 0), (2, 1)]
    first, resumed = _weights(uninterrupted["weights"]), _weights(result["weights"])
    assert all(torch.equal(first[k], resumed[k]) for k in first)


def test_full_ft_learning_rates_follow_llava_1_5():
    """LLaVA-1.5 (scripts/v1_5/finetune.sh) fine-tunes its whole LLM at 2e-5 after a 1e-3 projector pre-training;
    the fresh projector keeps 1e-3 here, and stage 3 scales both as it scales the LoRA variant's rate."""
    cfg = tr.TrainConfig(full_ft=True)
    captions, answers = tr._stages(cfg)
    assert (cfg.full_lr, captions.lr, captions.lm_lr) == (2e-5, 1e-3, 2e-5)
    assert answers.lm_lr == pytest.approx(2e-5 * cfg.answer_lr / cfg.caption_lr)


FULL = dict(TINY, full_ft=True, checkpoint_every=2, full_lr=0.3)  # 1.6 GB a checkpoint: fewer of them
# (full_lr far above the default, so that two warm-up steps move every weight by more than fp16's rounding)


def _drop_checkpoints(out):
    for ckpt in out.glob("*.ckpt"):
        ckpt.unlink()


@pytest.fixture(scope="module")
def full_trained(smollm2, tmp_path_factory):
    """A tiny --full-ft run, with the learning rate of each optimizer group at every step."""
    out, lrs = tmp_path_factory.mktemp("train-full"), []
    step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        lrs.append([(g["lr"], len(g["params"])) for g in self.param_groups])
        return step(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.AdamW, "step", spy)
        result = tr.train(out, tr.TrainConfig(**FULL), progress=False)
    yield out, result, lrs
    _drop_checkpoints(out)


def test_full_ft_trains_the_projector_and_smollm2_at_their_own_rates(full_trained):
    """Group 0 is the projector (2 linear layers) at caption_lr, group 1 all of SmolLM2 at full_lr; stage 3 scales
    both by answer_lr / caption_lr. Every step is warm-up here: the rate is (step + 1) / 30 of the base."""
    _, _, lrs = full_trained
    cfg = tr.TrainConfig(**FULL)
    fit = [groups for groups in lrs if len(groups) == 2]  # stage 1 (vision) has one group
    n_lm = sum(1 for _ in tbm.fresh()[0].model.language_model.parameters())
    assert [n for _, n in fit[0]] == [4, n_lm]
    ratio = cfg.answer_lr / cfg.caption_lr
    expected = [[cfg.caption_lr * w, cfg.full_lr * w] for w in (1 / 30, 2 / 30)]
    expected += [[cfg.answer_lr * w, cfg.full_lr * ratio * w] for w in (1 / 30, 2 / 30)]
    assert [lr for groups in fit for lr, _ in groups] == pytest.approx([lr for pair in expected for lr in pair])


def test_full_ft_moves_every_smollm2_weight_and_builds_that_model(trained, full_trained, tmp_path):
    """--full-ft: no adapter; every SmolLM2 tensor (embeddings too, tied to lm_head) is saved, has moved from
    SmolLM2's, and is what the built model holds; the frozen vision tower is stage 1's, as in the LoRA run."""
    import transformers as tf

    from headwise.assets.registry import require

    _, result, _ = full_trained
    state, lora_state = _weights(result["weights"]), _weights(trained[1]["weights"])
    assert not any("lora_" in k for k in state) and "lm_head.weight" not in state
    base = tf.AutoModelForCausalLM.from_pretrained(require("smollm2") / "hf", dtype=torch.float32).model.state_dict()
    for k, v in base.items():
        saved = state[tbm.LM_PREFIX + k].float()
        assert not torch.allclose(saved, v.half().float()), k  # moved by more than the fp16 rounding
    assert all(torch.equal(state[k], lora_state[k]) for k in state if "vision_tower" in k)
    model = tf.LlavaForConditionalGeneration.from_pretrained(tbm.build(weights=result["weights"],
                                                                           out=tmp_path / "model"))
    built = model.state_dict()
    assert all(torch.equal(built[k], v.float()) for k, v in state.items())
    assert torch.equal(model.lm_head.weight, built[tbm.LM_PREFIX + "embed_tokens.weight"])


def test_full_ft_from_lora_weights_starts_at_the_merged_model(smollm2, tmp_path):
    """--full-ft --init LORA with no steps left writes the LoRA model merged into full weights: building it gives
    the default emoji-llava, up to the fp16 rounding of SmolLM2's weights."""
    from safetensors.torch import load_file

    result = tr.train(tmp_path / "r", tr.TrainConfig(**{**TINY, "answer_steps": 0}, full_ft=True,
                                                     init=str(tbm.shipped_weights())), progress=False)
    full = load_file(result["weights"])
    merged, _ = tbm.fresh()
    tbm.load_into(merged, load_file(tbm.shipped_weights()), "shipped")
    expected = merged.state_dict()
    for k, v in full.items():
        assert torch.allclose(v.float(), expected[k], rtol=1e-3, atol=1e-6), k


def test_full_weights_given_to_a_lora_run_are_one_sentence_and_exit_2(full_trained, tmp_path):
    _, result, _ = full_trained
    proc = subprocess.run([sys.executable, "-m", "headwise.cli", "testbed", "train", "--out", str(tmp_path / "r"),
                           "--init", str(result["weights"])], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "add --full-ft" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_full_ft_killed_in_stage_three_resumes_to_the_uninterrupted_weights(full_trained, tmp_path, monkeypatch):
    """Both optimizer groups and the tied embedding come back from the checkpoint: a run stopped after stage 3's
    step 0 and rerun ends with the weights of the uninterrupted run (which checkpointed less often)."""
    _, uninterrupted, _ = full_trained
    real_scene = tr._scene

    def scene(step, i, batch, stream):
        if (stream, step, i) == (2, 1, 0) and not resumed:
            raise KeyboardInterrupt
        return real_scene(step, i, batch, stream)

    resumed = False
    monkeypatch.setattr(tr, "_scene", scene)
    cfg = tr.TrainConfig(**{**FULL, "checkpoint_every": 1})
    try:
        with pytest.raises(KeyboardInterrupt):
            tr.train(tmp_path, cfg, progress=False)
        assert torch.load(tmp_path / "answer.ckpt", weights_only=True)["step"] == 1
        assert not list(tmp_path.glob(".*.tmp"))
        resumed = True
        result = tr.train(tmp_path, cfg, progress=False)
    finally:
        _drop_checkpoints(tmp_path)
    first, again = _weights(uninterrupted["weights"]), _weights(result["weights"])
    assert set(first) == set(again) and all(torch.equal(first[k], again[k]) for k in first)


def test_a_full_file_missing_a_weight_is_refused(full_trained, tmp_path):
    from safetensors.torch import save_file

    _, result, _ = full_trained
    state = _weights(result["weights"])
    del state[tbm.LM_PREFIX + "layers.3.mlp.up_proj.weight"]
    save_file(state, str(tmp_path / "cut.safetensors"))
    with pytest.raises(tbm.AssetMissingError, match="without model.language_model.layers.3.mlp.up_proj.weight"):
        tbm.build(weights=tmp_path / "cut.safetensors", out=tmp_path / "model")


def test_full_lr_without_full_ft_is_one_sentence_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "headwise.cli", "testbed", "train", "--out", str(tmp_path / "r"),
                           "--full-lr", "1e-4"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "add --full-ft" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_run_directories_recorded_before_full_ft_existed_resume(tmp_path):
    """A LoRA run recorded without the full fine-tune's fields resumes (they take their defaults); a full one does not."""
    import yaml

    from headwise.runs import Run

    old = {k: v for k, v in tr.TrainConfig().to_dict().items() if k not in ("full_ft", "full_lr")}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"command": "testbed train", "config": old}))
    assert Run(tmp_path, "testbed train", {}, tr.TrainConfig()).resumed
    with pytest.raises(HeadwiseError, match="different settings"):
        Run(tmp_path, "testbed train", {}, tr.TrainConfig(full_ft=True))
