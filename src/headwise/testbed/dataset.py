"""Write a testbed split in COCO format: images, instances and captions JSON, and POPE question files.

The same CHAIR and POPE code that scores real COCO runs on these files unchanged.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from itertools import combinations
from pathlib import Path

from tqdm.auto import tqdm

from headwise.errors import HeadwiseError
from headwise.runs import atomic_write, out_dir
from headwise.testbed.scenes import Scene, categories, sample_scene, save_image, tight_box, world

POPE_SPLITS = ("random", "popular", "adversarial")
PLURALS = {"person": "people", "bus": "buses", "skis": "skis", "knife": "knives", "mouse": "mice",
           "sheep": "sheep", "wine glass": "wine glasses", "sandwich": "sandwiches", "couch": "couches",
           "toothbrush": "toothbrushes", "cell phone": "cell phones", "scissors": "scissors", "bench": "benches"}
NUMBERS = {2: "two", 3: "three"}
# Scissors and skis are plural nouns: "a pair of" reads naturally, and CHAIR still counts them.
ARTICLES = {"scissors": "a pair of scissors", "skis": "a pair of skis"}
TEMPLATES = (
    "A {context} scene with {objects}.",
    "There {be} {objects} in this picture.",
    "This image shows {objects}.",
    "In the {context}, I can see {objects}.",
    "A picture of {objects} in a {context}.",
)


def noun_phrase(category: str, count: int) -> str:
    if count > 1:
        return f"{NUMBERS.get(count, str(count))} {PLURALS.get(category, category + 's')}"
    if category in ARTICLES:
        return ARTICLES[category]
    return ("an " if category[0] in "aeiou" else "a ") + category


def join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def captions(scene: Scene, rng: random.Random, n: int = 5) -> list[str]:
    """n captions naming every object exactly (counts included), each in another template and order."""
    counts = Counter(o.category for o in scene.objects)
    out = []
    for template in rng.sample(TEMPLATES, k=min(n, len(TEMPLATES))):
        cats = list(counts)
        rng.shuffle(cats)
        phrases = [noun_phrase(c, counts[c]) for c in cats]
        plural = len(cats) > 1 or counts[cats[0]] > 1
        out.append(template.format(context=scene.context, objects=join(phrases), be="are" if plural else "is"))
    return out


def target_caption(scene: Scene) -> str:
    """The caption the testbed model is trained to produce: one fixed template, objects in box order."""
    counts = Counter(o.category for o in sorted(scene.objects, key=lambda o: (o.box[1] // 24, o.box[0])))
    return f"A {scene.context} scene with {join([noun_phrase(c, k) for c, k in counts.items()])}."


def pope_questions(scenes: list[Scene], seed: int, per_image: int = 3) -> dict[str, list[dict]]:
    """Balanced yes/no questions per image, negatives drawn at random, by frequency, or by co-occurrence."""
    cats = categories()
    freq = Counter(c for s in scenes for c in s.categories)
    co = Counter()
    for s in scenes:
        for a, b in combinations(sorted(s.categories), 2):
            co[a, b] += 1
            co[b, a] += 1
    by_freq = sorted(cats, key=lambda c: (-freq[c], c))
    out = {split: [] for split in POPE_SPLITS}
    for s in scenes:
        rng = random.Random(seed * 7_000_003 + s.image_id)
        present = sorted(s.categories)
        positives = rng.sample(present, k=min(per_image, len(present)))
        absent = [c for c in cats if c not in s.categories]
        cooc = sorted(absent, key=lambda c: (-sum(co[c, p] for p in present), c))
        negatives = {"random": rng.sample(absent, k=len(positives)),
                     "popular": [c for c in by_freq if c not in s.categories][:len(positives)],
                     "adversarial": cooc[:len(positives)]}
        for split in POPE_SPLITS:
            pairs = [(c, "yes") for c in positives] + [(c, "no") for c in negatives[split]]
            for cat, label in pairs:
                out[split].append({"question_id": len(out[split]), "image": f"testbed_{s.image_id:06d}.png",
                                   "text": f"Is there {noun_phrase(cat, 1)} in the image?", "label": label, "split": split})
    return out


def make(out: str | Path, n: int, seed: int = 0, size: int = 96, first_id: int = 0, progress: bool = True) -> dict:
    """Render n scenes and write images/, annotations/ (COCO instances + captions) and pope_<split>.jsonl."""
    if n < 1:
        raise HeadwiseError(f"--n must be at least 1, got {n}.")
    if size < 32:
        raise HeadwiseError(f"--size must be at least 32 pixels, got {size}.")
    out = out_dir(out)
    images_dir, ann_dir = out / "images", out / "annotations"
    images_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    w = world()
    coco_categories = [{"id": i, "name": name, "supercategory": "object"} for name, i in w["coco_ids"].items()]
    scenes, images, instances, caps = [], [], [], []
    for index in tqdm(range(first_id, first_id + n), desc="rendering scenes", disable=not progress):
        scene = sample_scene(seed, index, size)
        scenes.append(scene)
        name = save_image(scene, images_dir)
        images.append({"id": index, "file_name": name, "width": size, "height": size, "context": scene.context})
        for obj in scene.objects:
            box = tight_box(scene, obj)
            instances.append({"id": len(instances) + 1, "image_id": index, "category_id": w["coco_ids"][obj.category],
                              "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
        rng = random.Random(seed * 5_000_011 + index)
        for text in captions(scene, rng):
            caps.append({"id": len(caps) + 1, "image_id": index, "caption": text})
    atomic_write(ann_dir / "instances_testbed.json",
                 json.dumps({"images": images, "annotations": instances, "categories": coco_categories}))
    atomic_write(ann_dir / "captions_testbed.json", json.dumps({"images": images, "annotations": caps}))
    files = {}
    for split, qs in pope_questions(scenes, seed).items():
        files[split] = out / f"pope_{split}.jsonl"
        atomic_write(files[split], "".join(json.dumps(q) + "\n" for q in qs))
    atomic_write(out / "scenes.jsonl", "".join(json.dumps(
        {"image_id": s.image_id, "context": s.context, "objects": [[o.category, list(o.box)] for o in s.objects],
         "target": target_caption(s)}) + "\n" for s in scenes))
    return {"out": str(out), "images": len(images), "objects": len(instances), "captions": len(caps),
            "pope": {k: str(v) for k, v in files.items()}, "seed": seed, "size": size,
            "missing_categories": sorted(w["missing"])}
