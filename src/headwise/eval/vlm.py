"""CHAIR and POPE with a model in the loop: sample images, decode with a method, score, all in a run directory."""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from headwise.errors import HeadwiseError
from headwise.eval import chair as chair_mod
from headwise.eval import pope as pope_mod
from headwise.eval.runner import process_state, run_items
from headwise.runs import Run


@dataclass
class DecodeConfig:
    """How captions or answers are decoded (the same for every image of a run)."""

    method: str = "vhr"
    alpha: float = 2.0
    layers: list[int] | None = None
    prompt: str = "Please describe this image in detail."
    max_new_tokens: int = 64
    batch_size: int = 1
    seed: int = 0
    extra: dict = field(default_factory=dict)  # method options, e.g. cd_alpha, pai_gamma


def sample_images(images: Path, annotations, n: int, seed: int) -> list[dict]:
    """The first n annotated images present in the folder after a seeded shuffle of their ids."""
    present = sorted((image_id, name) for name, image_id in annotations.file_names.items()
                     if "/" not in name and (images / name).is_file())
    if not present:
        raise HeadwiseError(f"none of the annotated images is in {images}; check --images and --annotations.")
    random.Random(seed).shuffle(present)
    return [{"image_id": image_id, "file": name} for image_id, name in present[:n]]


def _describe(model, processor, decode: DecodeConfig, prompts_of, images_dir: Path):
    from headwise.vhr import generate
    from headwise.vhr.inputs import load_image

    def work(batch: list[dict]) -> list[dict]:
        imgs = [load_image(images_dir / item["file"]) for item in batch]
        start = time.perf_counter()
        out = generate(model, processor, imgs, prompts_of(batch), method=decode.method, alpha=decode.alpha,
                       layers=decode.layers, max_new_tokens=decode.max_new_tokens, **decode.extra)
        seconds = (time.perf_counter() - start) / len(batch)
        return [{"text": text, "seconds": seconds} for text in out.texts]
    return work


def _timing(rows: list[dict]) -> float | None:
    times = [r["seconds"] for r in rows if "seconds" in r]
    return sum(times) / len(times) if times else None


def run_chair(model, processor, images: Path, annotations: Path, n: int, decode: DecodeConfig, run: Run,
              synonyms: Path | None = None, drop_incomplete: bool = False, image_ids: Path | None = None) -> dict | None:
    """Caption n sampled images and score CHAIR. Returns the results on the main process."""
    import json

    from transformers import set_seed

    set_seed(decode.seed)
    ann = chair_mod.load_annotations(annotations)
    vocab = chair_mod.load_synonyms(synonyms)
    saved = run.read_json("image_ids.json")
    if image_ids is not None:
        items = json.loads(Path(image_ids).read_text())
    elif saved is not None:
        items = saved
    else:
        items = sample_images(Path(images), ann, n, decode.seed)
    if process_state().is_main_process:
        run.write_json("image_ids.json", items)
    rows = run_items(run, "captions", items, "image_id",
                     _describe(model, processor, decode, lambda b: [decode.prompt] * len(b), Path(images)),
                     batch_size=decode.batch_size, desc=f"captioning ({decode.method})")
    if rows is None:
        return None
    ok = [{"image_id": r["image_id"], "caption": r["text"]} for r in rows if "text" in r]
    failures = [r for r in rows if "error" in r]
    if not ok:
        raise HeadwiseError(f"every image failed; the first error: {failures[0]['error']}")
    metrics = chair_mod.score(ok, ann, vocab, drop_incomplete=drop_incomplete)
    run.write_json("chair_details.json", metrics.pop("captions"))
    result = {"task": "chair", "decode": asdict(decode), "metrics": metrics,
              "seconds_per_sample": _timing(rows), "failures": failures, "n_images": len(items)}
    run.finish(result)
    return result


def run_pope(model, processor, questions: Path, images: Path, decode: DecodeConfig, run: Run) -> dict | None:
    """Answer POPE questions about the images and score them. Returns the results on the main process."""
    from transformers import set_seed

    set_seed(decode.seed)
    qs = pope_mod.load_questions(questions)
    items = [{"key": q["question_id"] or f"line{q['line']}", "file": q["image"], "text": q["text"]} for q in qs]
    rows = run_items(run, "answers", items, "key",
                     _describe(model, processor, decode, lambda b: [item["text"] for item in b], Path(images)),
                     batch_size=decode.batch_size, desc=f"answering ({decode.method})")
    if rows is None:
        return None
    by_key = {r["key"]: r for r in rows}
    answered = [(q, by_key[it["key"]]) for q, it in zip(qs, items) if "text" in by_key.get(it["key"], {})]
    failures = [r for r in rows if "error" in r]
    if not answered:
        raise HeadwiseError(f"every question failed; the first error: {failures[0]['error']}")
    metrics = pope_mod.score([q for q, _ in answered], [{"question_id": q["question_id"], "answer": r["text"],
                                                          "line": q["line"]} for q, r in answered])
    result = {"task": "pope", "decode": asdict(decode), "metrics": metrics, "seconds_per_sample": _timing(rows),
              "failures": failures}
    run.finish(result)
    return result
