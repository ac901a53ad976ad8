"""Train emoji-llava on CPU: (1) the vision tower alone, to name and count the pictograms in a scene;
(2) the projector and a LoRA adapter on SmolLM2, to caption scenes and answer yes/no questions.

Both stages draw scenes from the generator's training stream (seed 1000, disjoint from the test
seeds), checkpoint every `checkpoint_every` steps into OUT and resume from there; data depend
only on the step, so a resumed run trains on exactly what an uninterrupted one would.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from headwise.runs import Run
from headwise.testbed import model as tbm
from headwise.testbed.dataset import noun_phrase, target_caption
from headwise.testbed.scenes import categories, render, sample_scene, world

TRAIN_SEED = 1000
PROMPT = "Please describe this image in detail."


@dataclass
class TrainConfig:
    """Settings of `headwise testbed train`.

    Args:
        vision_steps / vision_batch / vision_lr: stage 1, the ViT with a presence-and-count head.
        caption_steps / caption_batch / caption_lr: stage 2, projector + LoRA through frozen SmolLM2.
        qa_fraction: share of stage-2 samples that are yes/no questions instead of captions.
        checkpoint_every: steps between checkpoints (both stages).
    """

    vision_steps: int = 400
    vision_batch: int = 64
    vision_lr: float = 1e-3
    caption_steps: int = 800
    caption_batch: int = 8
    caption_lr: float = 1e-3
    qa_fraction: float = 0.4
    checkpoint_every: int = 50
    seed: int = 0


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
            torch.save({"tower": tower.state_dict(), "head": head.state_dict(), "opt": opt.state_dict(),
                        "step": step + 1, "losses": losses}, ckpt_path)
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
    prompt = proc(text=texts, images=[render(s) for s in scenes], return_tensors="pt", padding=True)
    tok.padding_side = "right"
    ans = tok(answers, add_special_tokens=False, return_tensors="pt", padding=True)
    ids = torch.cat([prompt["input_ids"], ans["input_ids"]], dim=1)
    mask = torch.cat([prompt["attention_mask"], ans["attention_mask"]], dim=1)
    labels = torch.cat([torch.full_like(prompt["input_ids"], -100),
                        ans["input_ids"].masked_fill(ans["attention_mask"] == 0, -100)], dim=1)
    # Prompts are left-padded by the processor's tokenizer, answers right-padded: labels only on answer tokens.
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": prompt["pixel_values"], "labels": labels}


def train_captions(model, proc, cfg: TrainConfig, run: Run, progress: bool = True):
    """Stage 2: projector + LoRA(q, v) on SmolLM2 learn to caption and to answer yes/no; the ViT stays frozen."""
    from peft import LoraConfig, get_peft_model

    for p in model.parameters():
        p.requires_grad_(False)
    peft_model = get_peft_model(model, LoraConfig(r=tbm.LORA_RANK, lora_alpha=tbm.LORA_ALPHA, lora_dropout=0.0,
                                                  target_modules=r".*language_model.*\.(q_proj|v_proj)"))
    for p in model.model.multi_modal_projector.parameters():
        p.requires_grad_(True)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.caption_lr, weight_decay=0.0)
    ckpt_path = run.path("caption.ckpt")
    start, losses = 0, []
    if (ckpt := _load_checkpoint(ckpt_path)) is not None:
        peft_model.load_state_dict(ckpt["trainable"], strict=False)
        opt.load_state_dict(ckpt["opt"])
        start, losses = ckpt["step"], ckpt["losses"]
    proc.tokenizer.padding_side = "left"
    peft_model.train()
    for step in tqdm(range(start, cfg.caption_steps), initial=start, total=cfg.caption_steps,
                     desc="stage 2: captions", disable=not progress):
        rng = random.Random(cfg.seed * 100_003 + step)
        scenes = [_scene(step, i, cfg.caption_batch, 1) for i in range(cfg.caption_batch)]
        batch = _caption_batch(proc, scenes, rng, cfg.qa_fraction)
        proc.tokenizer.padding_side = "left"
        loss = peft_model(**batch).loss
        for group in opt.param_groups:
            group["lr"] = cfg.caption_lr * _cosine(step, cfg.caption_steps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.caption_steps:
            trainable = {k: v for k, v in peft_model.state_dict().items()
                         if "lora_" in k or "multi_modal_projector" in k}
            torch.save({"trainable": trainable, "opt": opt.state_dict(), "step": step + 1, "losses": losses}, ckpt_path)
    peft_model.eval()
    return peft_model, {"caption_final_loss": float(np.mean(losses[-50:])) if losses else None}


def train(out: str | Path, cfg: TrainConfig, progress: bool = True) -> dict:
    """Both stages, then OUT/emoji_llava.safetensors (vision tower, projector, LoRA factors; fp16)."""
    from safetensors.torch import save_file

    run = Run(out, "testbed train", asdict(cfg))
    torch.manual_seed(cfg.seed)
    model, proc = tbm.fresh(seed=cfg.seed)
    start = time.perf_counter()
    stats = train_vision(model, proc, cfg, run, progress)
    vision_seconds = time.perf_counter() - start
    peft_model, caption_stats = train_captions(model, proc, cfg, run, progress)
    state = {k.replace("base_model.model.", ""): v.detach().to(torch.float16).contiguous()
             for k, v in peft_model.state_dict().items()
             if "lora_" in k or k.replace("base_model.model.", "").startswith(("model.vision_tower.", "model.multi_modal_projector."))}
    weights = run.path("emoji_llava.safetensors")
    save_file(state, str(weights))
    result = {**stats, **caption_stats, "weights": str(weights), "bytes": weights.stat().st_size,
              "vision_seconds": vision_seconds, "total_seconds": time.perf_counter() - start}
    run.finish(result)
    return result
