"""CHAIR and POPE with a model in the loop: sample images, let a decoder describe them, score, all in a run directory.

eval scores and imports no method: the caller hands the runners a `Decoder`, whose `describe`
turns image files and prompts into texts (headwise.vhr.decode builds one for greedy, VHR, VCD, PAI).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from headwise.config import Settings
from headwise.errors import HeadwiseError
from headwise.eval import chair as chair_mod
from headwise.eval import pope as pope_mod
from headwise.distributed import process_state
from headwise.eval.runner import run_items
from headwise.runs import Run


@dataclass
class ChairConfig(Settings):
    """What `eval chair --model` captions and how it scores: `n` images sampled (seeded) from those annotated in
    `annotations` and present in `images` (or the list in `image_ids`), scored with `synonyms` (headwise's table
    when None), cutting each caption after its last full sentence when `drop_incomplete`. `compat` "original"
    reads captions as the original NLTK evaluator does (`headwise.eval.chair_original`; `synonyms` is then its
    synonyms.txt); the preset "original" sets it."""

    images: str = ""
    annotations: str = ""
    n: int = 500
    image_ids: str | None = None
    synonyms: str | None = None
    drop_incomplete: bool = False
    compat: str = "headwise"

    PRESETS = {"original": {"compat": "original"}}

    def validate(self) -> None:
        if self.n < 1:
            raise HeadwiseError(f"--n must be at least 1, got {self.n}.")
        if self.compat not in chair_mod.COMPAT:
            raise HeadwiseError(f"unknown --compat {self.compat!r}; choose one of {', '.join(chair_mod.COMPAT)}.")


@dataclass
class PopeConfig(Settings):
    """What `eval pope --model` answers: the POPE `questions` about the images in `images`."""

    images: str = ""
    questions: str = ""


@dataclass
class Decoder:
    """What a model-in-the-loop run needs from whoever decodes.

    Args:
        describe: (image files, prompts) -> one text per image.
        settings: recorded as "decode" in results.json.
        prompt: the instruction given with every CHAIR image (POPE uses each question's text).
        seed: of the image sample and of transformers' RNGs. batch_size: images per describe() call.
        label: names the run in progress bars.
    """

    describe: Callable[[list[Path], list[str]], list[str]]
    settings: dict = field(default_factory=dict)
    prompt: str = "Please describe this image in detail."
    seed: int = 0
    batch_size: int = 1
    label: str = "model"


def sample_images(images: Path, annotations, n: int, seed: int) -> list[dict]:
    """The first n annotated images present in the folder after a seeded shuffle of their ids."""
    present = sorted((image_id, name) for name, image_id in annotations.file_names.items()
                     if "/" not in name and (images / name).is_file())
    if not present:
        raise HeadwiseError(f"none of the annotated images is in {images}; check --images and --annotations.")
    random.Random(seed).shuffle(present)
    return [{"image_id": image_id, "file": name} for image_id, name in present[:n]]


def _describe(decoder: Decoder, prompts_of, images_dir: Path):
    def work(batch: list[dict]) -> list[dict]:
        start = time.perf_counter()
        texts = decoder.describe([images_dir / item["file"] for item in batch], prompts_of(batch))
        seconds = (time.perf_counter() - start) / len(batch)
        return [{"text": text, "seconds": seconds} for text in texts]
    return work


def _timing(rows: list[dict]) -> float | None:
    times = [r["seconds"] for r in rows if "seconds" in r]
    return sum(times) / len(times) if times else None


def run_chair(decoder: Decoder, cfg: ChairConfig, run: Run) -> dict | None:
    """Caption cfg.n sampled images and score CHAIR. Returns the results on the main process."""
    import json

    from transformers import set_seed

    images, annotations, n, image_ids = cfg.images, cfg.annotations, cfg.n, cfg.image_ids
    synonyms, drop_incomplete = cfg.synonyms, cfg.drop_incomplete
    set_seed(decoder.seed)
    ann = chair_mod.load_annotations(annotations)
    vocab = chair_mod.load_vocabulary(synonyms, cfg.compat)
    saved = run.read_json("image_ids.json")
    if image_ids is not None:
        items = json.loads(Path(image_ids).read_text())
    elif saved is not None:
        items = saved
    else:
        items = sample_images(Path(images), ann, n, decoder.seed)
    if process_state().is_main_process:
        run.write_json("image_ids.json", items)
    rows = run_items(run, "captions", items, "image_id",
                     _describe(decoder, lambda b: [decoder.prompt] * len(b), Path(images)),
                     batch_size=decoder.batch_size, desc=f"captioning ({decoder.label})")
    if rows is None:
        return None
    ok = [{"image_id": r["image_id"], "caption": r["text"]} for r in rows if "text" in r]
    failures = [r for r in rows if "error" in r]
    if not ok:
        raise HeadwiseError(f"every image failed; the first error: {failures[0]['error']}")
    metrics = chair_mod.score(ok, ann, vocab, drop_incomplete=drop_incomplete)
    run.write_json("chair_details.json", metrics.pop("captions"))
    result = {"task": "chair", "decode": decoder.settings, "metrics": metrics,
              "seconds_per_sample": _timing(rows), "failures": failures, "n_images": len(items)}
    run.finish(result)
    return result


def run_pope(decoder: Decoder, cfg: PopeConfig, run: Run) -> dict | None:
    """Answer POPE questions about the images and score them. Returns the results on the main process."""
    from transformers import set_seed

    questions, images = cfg.questions, cfg.images
    set_seed(decoder.seed)
    qs = pope_mod.load_questions(questions)
    items = [{"key": q["question_id"] or f"line{q['line']}", "file": q["image"], "text": q["text"]} for q in qs]
    rows = run_items(run, "answers", items, "key",
                     _describe(decoder, lambda b: [item["text"] for item in b], Path(images)),
                     batch_size=decoder.batch_size, desc=f"answering ({decoder.label})")
    if rows is None:
        return None
    by_key = {r["key"]: r for r in rows}
    answered = [(q, by_key[it["key"]]) for q, it in zip(qs, items) if "text" in by_key.get(it["key"], {})]
    failures = [r for r in rows if "error" in r]
    if not answered:
        raise HeadwiseError(f"every question failed; the first error: {failures[0]['error']}")
    metrics = pope_mod.score([q for q, _ in answered], [{"question_id": q["question_id"], "answer": r["text"],
                                                          "line": q["line"]} for q, r in answered])
    result = {"task": "pope", "decode": decoder.settings, "metrics": metrics, "seconds_per_sample": _timing(rows),
              "failures": failures}
    run.finish(result)
    return result
