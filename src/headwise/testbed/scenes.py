"""Scenes of OpenMoji pictograms with exact ground truth: which COCO objects, where, in what context.

A scene is drawn from a context (kitchen, street, park...) whose object weights and pair rules
(scenes.json) give realistic co-occurrence, so a captioner trained on them learns language priors
the way real captioners do, and can hallucinate a knife in a kitchen that holds only a spoon.
Everything is a function of (seed, index): the same scene comes out on every machine.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from headwise.assets.registry import require


@lru_cache(maxsize=1)
def world() -> dict:
    return json.loads(resources.files("headwise.testbed").joinpath("data/scenes.json").read_text())


def categories() -> list[str]:
    """The COCO categories that have a pictogram, in COCO id order."""
    w = world()
    return sorted(w["emoji"], key=w["coco_ids"].get)


@dataclass
class SceneObject:
    category: str
    box: tuple[int, int, int, int]  # x, y, width, height in pixels


@dataclass
class Scene:
    image_id: int
    context: str
    size: int
    objects: list[SceneObject] = field(default_factory=list)

    @property
    def categories(self) -> set[str]:
        return {o.category for o in self.objects}


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / (aw * ah + bw * bh - inter)


def sample_scene(seed: int, index: int, size: int = 96) -> Scene:
    """Draw scene `index` of the stream `seed`: a context, 2-6 objects (some in pairs, some twice) and boxes."""
    rng = random.Random(seed * 1_000_003 + index)
    w = world()
    context = rng.choice(sorted(w["contexts"]))
    weights = dict(w["contexts"][context]["objects"])
    target = rng.randint(2, 6)
    chosen: list[str] = []
    while len(chosen) < target and weights:
        cat = rng.choices(list(weights), weights=list(weights.values()))[0]
        del weights[cat]
        chosen.append(cat)
        for a, b, p in w["pairs"]:
            if a == cat and b not in chosen and len(chosen) < target and rng.random() < p:
                chosen.append(b)
                weights.pop(b, None)
    if len(chosen) < 6 and rng.random() < 0.15:
        chosen.append(rng.choice(chosen))  # a second dog, a second cup...
    scene = Scene(index, context, size)
    for cat in chosen:
        for _ in range(60):
            side = int(size * rng.uniform(0.22, 0.36))
            box = (rng.randint(0, size - side), rng.randint(0, size - side), side, side)
            if all(_iou(box, o.box) < 0.1 for o in scene.objects):
                scene.objects.append(SceneObject(cat, box))
                break
    return scene


@lru_cache(maxsize=None)
def _sprite(category: str) -> Image.Image:
    """The category's pictogram as a tight RGBA crop, rendered once from OpenMoji's colour font."""
    font = ImageFont.truetype(str(require("openmoji") / "font" / "glyf_colr0.ttf"), 144)
    canvas = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((10, 10), chr(int(world()["emoji"][category], 16)), font=font, embedded_color=True)
    return canvas.crop(canvas.getbbox())


def render(scene: Scene) -> Image.Image:
    """Paint the background (a gradient between the context's two colours, with grain) and the pictograms."""
    rng = np.random.default_rng(scene.image_id + 7919 * scene.size)
    top, bottom = (np.array(c, dtype=float) for c in world()["contexts"][scene.context]["background"])
    t = np.linspace(0, 1, scene.size)[:, None, None]
    pixels = top * (1 - t) + bottom * t + rng.normal(0, 6, (scene.size, scene.size, 3))
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8).repeat(1, axis=1), "RGB")
    for obj in scene.objects:
        x, y, w, h = obj.box
        sprite = _sprite(obj.category)
        scale = min(w / sprite.width, h / sprite.height)
        sprite = sprite.resize((max(1, round(sprite.width * scale)), max(1, round(sprite.height * scale))),
                               Image.LANCZOS)
        img.paste(sprite, (x + (w - sprite.width) // 2, y + (h - sprite.height) // 2), sprite)
    return img


def tight_box(scene: Scene, obj: SceneObject) -> list[float]:
    """The pasted pictogram's box (COCO [x, y, w, h]): the sprite keeps its aspect ratio inside obj.box."""
    x, y, w, h = obj.box
    sprite = _sprite(obj.category)
    scale = min(w / sprite.width, h / sprite.height)
    sw, sh = max(1, round(sprite.width * scale)), max(1, round(sprite.height * scale))
    return [float(x + (w - sw) // 2), float(y + (h - sh) // 2), float(sw), float(sh)]


def save_image(scene: Scene, folder: Path) -> str:
    name = f"testbed_{scene.image_id:06d}.png"
    render(scene).save(folder / name)
    return name
