"""Train emoji-llava on CPU: (1) the vision tower alone, to name and count the pictograms in a scene;
(2) the projector and a LoRA adapter on SmolLM2, to caption scenes and answer yes/no questions;
(3) the same weights again on mostly questions, each example weighing the same, so answers look at the image.
With `full_ft`, stages 2 and 3 update every SmolLM2 weight instead of the adapter, as LLaVA-1.5's stage 2 does.

Every stage draws scenes from its own training stream of the generator (seeds 1000-1002, disjoint
from the test seeds) and checkpoints every `checkpoint_every` steps into OUT, resuming from there;
data depend only on the step, so a resumed run trains on exactly what an uninterrupted one would.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from headwise.config import Settings
from headwise.errors import HeadwiseError
from headwise.runs import Run, atomic_write
from headwise.testbed import model as tbm
from headwise.testbed.dataset import noun_phrase, target_caption
from headwise.testbed.scenes import categories, render, sample_scene, world

TRAIN_SEED = 1000
PROMPT = "Please describe this image in detail."


@dataclass
class TrainConfig(Settings):
    """Settings of `headwise testbed train`.

    Args:
        vision_steps / vision_batch / vision_lr: stage 1, the ViT with a presence-and-count head.
        caption_steps / caption_batch / caption_lr: stage 2, projector + LoRA through frozen SmolLM2.
        qa_fraction: share of stage-2 samples that are yes/no questions instead of captions.
        answer_steps / answer_lr / answer_qa_fraction: stage 3, the same weights on a question-heavy mix
            where every example weighs the same in the loss (stage 2's token mean lets captions drown
            the 3-token answers).
        full_ft: stages 2 and 3 train all of SmolLM2 (embeddings included) and the projector, no LoRA.
        full_lr: stage 2's learning rate for SmolLM2's weights under `full_ft` (LLaVA-1.5's full fine-tune
            uses 2e-5); the projector keeps `caption_lr`, and stage 3 scales both by answer_lr / caption_lr.
        init: weights to start stage 3 from (skips stages 1 and 2): LoRA weights, or with `full_ft` either
            layout (LoRA factors are merged first).
        checkpoint_every: steps between checkpoints (every stage).
    """

    vision_steps: int = 400
    vision_batch: int = 64
    vision_lr: float = 1e-3
    caption_steps: int = 800
    caption_batch: int = 8
    caption_lr: float = 1e-3
    qa_fraction: float = 0.4
    answer_steps: int = 300
    answer_lr: float = 3e-4
    answer_qa_fraction: float = 0.75
    checkpoint_every: int = 50
    seed: int = 0
    full_ft: bool = False
    full_lr: float = 2e-5
    init: str | None = None

    def validate(self) -> None:
        if min(self.vision_steps, self.caption_steps, self.answer_steps) < 0:
            raise HeadwiseError("--vision-steps, --caption-steps and --answer-steps must be 0 or more.")
        if not self.full_lr > 0:
            raise HeadwiseError(f"--full-lr must be above 0, not {self.full_lr}.")


def _pixels(proc, images) -> torch.Tensor:
    """What the processor computes for scenes already at the model's size (no resize or crop), without PIL round trips."""
    ip = proc.image_processor
    x = torch.from_numpy(np.stack([np.asarray(img, dtype=np.float32) for img in images])).permute(0, 3, 1, 2)
    mean = torch.tensor(ip.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(ip.image_std).view(1, 3, 1, 1)
    return (x * ip.rescale_factor - mean) / std


def _scene(step: int, i: int, batch: int, stream: int):
    return sample_scene(TRAIN_SEED + stream, step * batch + i, tbm.IMAGE_SIZE)


def _vision_targets(scene, index: dict[str, int]) -> torch.Tensor:
    y = torch.zeros(2 * len(index))
    counts = {}
    for o in scene.objects:
        counts[o.category] = counts.get(o.category, 0) + 1
    for cat, k in counts.items():
        y[index[cat]] = 1.0
        y[len(index) + index[cat]] = float(k > 1)
    return y


def _cosine(step: int, total: int, warmup: int = 30) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _load_checkpoint(path: Path):
    return torch.load(path, weights_only=True) if path.is_file() else None


def train_vision(model, proc, cfg: TrainConfig, run: Run, progress: bool = True) -> dict:
    """Stage 1: the vision tower learns which pictograms a scene holds (and which twice) from mean-pooled patches."""
    tower = model.model.vision_tower
    cats = categories()
    index = {c: i for i, c in enumerate(cats)}
    head = torch.nn.Linear(tower.config.hidden_size, 2 * len(cats))
    params = list(tower.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.vision_lr, weight_decay=0.01)
    ckpt_path = run.path("vision.ckpt")
    start, losses = 0, []
    if (ckpt := _load_checkpoint(ckpt_path)) is not None:
        tower.load_state_dict(ckpt["tower"])
        head.load_state_dict(ckpt["head"])
        opt.load_state_dict(ckpt["opt"])
        start, losses = ckpt["step"], ckpt["losses"]
    tower.train()
    for step in tqdm(range(start, cfg.vision_steps), initial=start, total=cfg.vision_steps, desc="stage 1: vision",
                     disable=not progress):
        scenes = [_scene(step, i, cfg.vision_batch, 0) for i in range(cfg.vision_batch)]
        x = _pixels(proc, [render(s) for s in scenes])
        y = torch.stack([_vision_targets(s, index) for s in scenes])
        feats = tower(pixel_values=x, output_hidden_states=True).hidden_states[-1][:, 1:].mean(1)
        loss = F.binary_cross_entropy_with_logits(head(feats), y)
        for group in opt.param_groups:
            group["lr"] = cfg.vision_lr * _cosine(step, cfg.vision_steps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.vision_steps:
            ckpt = {"tower": tower.state_dict(), "head": head.state_dict(), "opt": opt.state_dict(),
                    "step": step + 1, "losses": losses}
            atomic_write(ckpt_path, lambda tmp: torch.save(ckpt, tmp))
    tower.eval()
    return {"vision_final_loss": float(np.mean(losses[-50:])) if losses else None}


def _example(scene, rng: random.Random, qa_fraction: float) -> tuple[str, str]:
    """(question, answer): a caption request, or a yes/no question about a present or absent object."""
    if rng.random() >= qa_fraction:
        return PROMPT, target_caption(scene)
    present = sorted(scene.categories)
    if rng.random() < 0.5:
        return f"Is there {noun_phrase(rng.choice(present), 1)} in the image?", "Yes."
    context = [c for c in world()["contexts"][scene.context]["objects"] if c not in scene.categories]
    pool = context if context and rng.random() < 0.5 else [c for c in categories() if c not in scene.categories]
    return f"Is there {noun_phrase(rng.choice(pool), 1)} in the image?", "No."


def _caption_batch(proc, scenes, rng, qa_fraction: float):
    tok = proc.tokenizer
    texts, answers = [], []
    for s in scenes:
        q, a = _example(s, rng, qa_fraction)
        texts.append(proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
                                              add_generation_prompt=True, tokenize=False))
        answers.append(a + "<|im_end|>")
    tok.padding_side = "left"
    prompt = proc(text=texts, images=[render(s) for s in scenes], return_tensors="pt", padding=True)
    tok.padding_side = "right"
    ans = tok(answers, add_special_tokens=False, return_tensors="pt", padding=True)
    tok.padding_side = "left"
    ids = torch.cat([prompt["input_ids"], ans["input_ids"]], dim=1)
    mask = torch.cat([prompt["attention_mask"], ans["attention_mask"]], dim=1)
    labels = torch.cat([torch.full_like(prompt["input_ids"], -100),
                        ans["input_ids"].masked_fill(ans["attention_mask"] == 0, -100)], dim=1)
    # Prompts are left-padded by the processor's tokenizer, answers right-padded: labels only on answer tokens.
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": prompt["pixel_values"], "labels": labels}


def _loss(net, batch: dict, per_sample: bool) -> torch.Tensor:
    if not per_sample:
        return net(**batch).loss
    # A yes/no answer is 3 tokens and a caption 30: a token mean lets captions drown the answers, so each
    # example counts once here.
    labels = batch["labels"][:, 1:]
    logits = net(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1]
    ce = F.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
    mask = (labels != -100).float()
    return ((ce * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()


@dataclass
class _Stage:
    name: str
    steps: int
    lr: float
    lm_lr: float
    qa_fraction: float
    stream: int
    per_sample: bool
    checkpoint: str


def _fit(net, proc, stage: _Stage, cfg: TrainConfig, run: Run, progress: bool) -> dict:
    """Train what `_adapter` left trainable on `stage`'s mix of captions and yes/no answers; checkpoints and resumes."""
    named = [(k, p) for k, p in net.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    if cfg.full_ft:  # a fresh projector needs a larger step than pretrained SmolLM2 weights
        groups = [[p for k, p in named if "multi_modal_projector" in k],
                  [p for k, p in named if "multi_modal_projector" not in k]]
        base_lrs = [stage.lr, stage.lm_lr]
    else:
        groups, base_lrs = [params], [stage.lr]
    opt = torch.optim.AdamW([{"params": g} for g in groups], lr=stage.lr, weight_decay=0.0)
    ckpt_path = run.path(stage.checkpoint)
    start, losses = 0, []
    if (ckpt := _load_checkpoint(ckpt_path)) is not None:
        net.load_state_dict(ckpt["trainable"], strict=False)
        opt.load_state_dict(ckpt["opt"])
        start, losses = ckpt["step"], ckpt["losses"]
    net.train()
    for step in tqdm(range(start, stage.steps), initial=start, total=stage.steps, desc=stage.name,
                     disable=not progress):
        # Stream 1 (stage 2) keeps the seeding it always had, so the stage-2 weights stay reproducible.
        rng = random.Random(cfg.seed * 100_003 + step + 7_919 * (stage.stream - 1))
        scenes = [_scene(step, i, cfg.caption_batch, stage.stream) for i in range(cfg.caption_batch)]
        batch = _caption_batch(proc, scenes, rng, stage.qa_fraction)
        loss = _loss(net, batch, stage.per_sample)
        for group, base_lr in zip(opt.param_groups, base_lrs):
            group["lr"] = base_lr * _cosine(step, stage.steps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == stage.steps:
            trainable = {k: p.detach() for k, p in named}
            ckpt = {"trainable": trainable, "opt": opt.state_dict(), "step": step + 1, "losses": losses}
            atomic_write(ckpt_path, lambda tmp: torch.save(ckpt, tmp))
    net.eval()
    return {f"{stage.checkpoint.split('.')[0]}_final_loss": float(np.mean(losses[-50:])) if losses else None}


def _adapter(model, full_ft: bool = False):
    """Freeze the vision tower; train the projector and a LoRA on SmolLM2, or with `full_ft` all of SmolLM2."""
    for p in model.parameters():
        p.requires_grad_(False)
    if full_ft:
        model.model.language_model.requires_grad_(True)
        model.lm_head.requires_grad_(True)  # the embedding itself when tied, as in SmolLM2
        trained = model
    else:
        trained = tbm.with_adapter(model)
    for p in model.model.multi_modal_projector.parameters():
        p.requires_grad_(True)
    return trained


def _stages(cfg: TrainConfig) -> tuple[_Stage, _Stage]:
    answer_lm_lr = cfg.full_lr * cfg.answer_lr / cfg.caption_lr
    captions = _Stage("stage 2: captions", cfg.caption_steps, cfg.caption_lr, cfg.full_lr, cfg.qa_fraction, 1, False,
                      "caption.ckpt")
    answers = _Stage("stage 3: answers", cfg.answer_steps, cfg.answer_lr, answer_lm_lr, cfg.answer_qa_fraction, 2,
                     True, "answer.ckpt")
    return captions, answers


def train(out: str | Path, cfg: TrainConfig, progress: bool = True) -> dict:
    """All stages, then OUT/emoji_llava.safetensors (vision tower, projector, LoRA factors or with `full_ft`
    all of SmolLM2's weights; fp16).

    With `cfg.init` (weights in that layout, e.g. the shipped ones) stages 1 and 2 are skipped and
    stage 3 continues from them.
    """
    from safetensors.torch import save_file

    init_state = tbm.read_weights(cfg.init, "--init") if cfg.init else None
    if init_state is not None and tbm.is_full(init_state) and not cfg.full_ft:
        raise HeadwiseError(f"--init {cfg.init} holds fully fine-tuned SmolLM2 weights; add --full-ft to go on "
                            "training them, or give LoRA weights.")
    run = Run(out, "testbed train", {}, cfg)
    torch.manual_seed(cfg.seed)
    model, proc = tbm.fresh(seed=cfg.seed)
    captions, answers = _stages(cfg)
    start = time.perf_counter()
    if init_state is not None:
        if cfg.full_ft:  # LoRA weights are merged, so a full fine-tune can also go on from the default model
            tbm.load_into(model, init_state, cfg.init)
            trained = _adapter(model, full_ft=True)
        else:
            trained = _adapter(model)
            tbm.load_trained(trained, init_state)
        stats = {"init": str(cfg.init)}
    else:
        stats = train_vision(model, proc, cfg, run, progress)
        stats["vision_seconds"] = time.perf_counter() - start
        trained = _adapter(model, cfg.full_ft)
        stats.update(_fit(trained, proc, captions, cfg, run, progress))
    stats.update(_fit(trained, proc, answers, cfg, run, progress))
    state = {k: v.to(torch.float16) for k, v in tbm.trainable_state(model, cfg.full_ft).items()}
    weights = run.path("emoji_llava.safetensors")
    atomic_write(weights, lambda tmp: save_file(state, str(tmp)))
    result = {**stats, "weights": str(weights), "bytes": weights.stat().st_size,
              "total_seconds": time.perf_counter() - start}
    run.finish(result)
    return result
