"""Local lmms-eval tasks on testbed scenes, scored by headwise's pinned POPE and CHAIR metrics.

`write_tasks(out, n, seed)` renders `n` testbed scenes (`headwise.testbed.dataset.make`) and writes, for
`lmms-eval eval --include_path OUT`:

- `headwise_pope_random`, `headwise_pope_popular`, `headwise_pope_adversarial` (group `headwise_pope`): the
  scenes' POPE questions as asked by `headwise eval pope` (the question's text, nothing appended), answers
  parsed by `headwise.eval.pope.parse_answer` and scored by `headwise.eval.pope.metrics`, so the numbers are
  `headwise eval pope`'s. lmms-eval's own POPE task counts an answer right only when it is exactly "yes"/"no"
  and reports the ground truth's yes-ratio; these report the predicted one.
- `headwise_chair`: a caption per scene ("Please describe this image in detail.", 64 new tokens), scored by
  `headwise.eval.chair.score` against the scenes' COCO annotations.

Data are JSON lines read by the `datasets` json builder from absolute paths (no hub); the task folder's
utils.py only re-exports the functions below. Nothing here imports lmms-eval.
"""

from __future__ import annotations

import json
from pathlib import Path

from headwise.runs import atomic_write, check_out

POPE_TASKS = ("random", "popular", "adversarial")
CHAIR_PROMPT = "Please describe this image in detail."
POPE_METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")
CHAIR_METRICS = {"chair_s": False, "chair_i": False, "recall": True, "len": True}
UTILS = "# Written by headwise: the task functions live in headwise.integrations.lmms_tasks.\n" \
        "from headwise.integrations.lmms_tasks import *  # noqa: F401,F403\n"


# ---- task functions (named by the YAML files through utils.py) ------------------------------------------

def doc_to_visual(doc: dict) -> list:
    from headwise.vhr.inputs import load_image

    return [load_image(doc["image_path"])]


def pope_doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    return doc["text"]


def pope_process_results(doc: dict, results: list[str]) -> dict:
    record = {"question_id": doc["question_id"], "label": doc["label"], "answer": results[0]}
    return {f"pope_{name}": record for name in POPE_METRICS}


def pope_scores(records: list[dict]) -> dict:
    """headwise's POPE metrics of lmms-eval's per-question records (the pinned parser, predicted yes-ratio)."""
    from headwise.eval.pope import metrics, parse_answer

    return metrics([r["label"] for r in records], [parse_answer(r["answer"]) for r in records])


def _aggregation(scores, name: str):
    """lmms-eval's aggregation of one metric: `scores(records)[name]` (each metric of a task names one)."""
    def aggregate(records: list[dict]) -> float:
        return scores(records)[name]

    prefix = scores.__name__.split("_")[0]
    aggregate.__name__ = aggregate.__qualname__ = name if name.startswith(prefix) else f"{prefix}_{name}"
    return aggregate


pope_accuracy, pope_precision, pope_recall, pope_f1, pope_yes_ratio = (_aggregation(pope_scores, m)
                                                                       for m in POPE_METRICS)


def chair_doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    return CHAIR_PROMPT


def chair_process_results(doc: dict, results: list[str]) -> dict:
    record = {"image_id": doc["image_id"], "caption": results[0], "annotations": doc["annotations"]}
    return {name: record for name in CHAIR_METRICS}


def chair_scores(records: list[dict]) -> dict:
    """headwise's CHAIR of lmms-eval's per-image records, against the scenes' annotations."""
    from headwise.eval.chair import load_annotations, load_synonyms, score

    folders = {r["annotations"] for r in records}
    annotations = load_annotations(folders.pop())
    return score([{"image_id": r["image_id"], "caption": r["caption"]} for r in records], annotations,
                 load_synonyms())


chair_s, chair_i, chair_recall, chair_len = (_aggregation(chair_scores, m) for m in CHAIR_METRICS)


# ---- writing the tasks --------------------------------------------------------------------------------

def _yaml(task: str, data: Path, text: str, max_new_tokens: int, process: str, metrics: list[tuple]) -> str:
    lines = [f"task: {task}", "dataset_path: json", "dataset_kwargs:", "  data_files:",
             f"    test: {json.dumps(str(data))}", "test_split: test", "output_type: generate_until",
             "doc_to_visual: !function utils.doc_to_visual", f"doc_to_text: !function utils.{text}",
             "doc_to_target: \"\"", "generation_kwargs:", f"  max_new_tokens: {max_new_tokens}",
             "  temperature: 0", "  do_sample: false", "  until: []", f"process_results: !function utils.{process}",
             "metric_list:"]
    for metric, function, higher in metrics:
        lines += [f"  - metric: {metric}", f"    aggregation: !function utils.{function}",
                  f"    higher_is_better: {str(higher).lower()}"]
    return "\n".join(lines + ["metadata:", "  version: 1.0", ""])


def _jsonl(path: Path, rows: list[dict]) -> Path:
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_tasks(out: str | Path, n: int = 20, seed: int = 0) -> dict:
    """Render `n` testbed scenes (scene stream `seed`) into OUT/scenes and write the POPE and CHAIR task files.

    Returns:
        {"include_path", "tasks", "scenes", "questions": {split: the POPE questions file `headwise eval pope`
        reads}, "images", "annotations"}.
    """
    from headwise.testbed.dataset import make

    out = check_out(out).resolve()
    made = make(out / "scenes", n, seed=seed, progress=False)
    images, annotations = out / "scenes" / "images", out / "scenes" / "annotations"
    data = out / "data"
    tasks = []
    for split in POPE_TASKS:
        questions = [json.loads(line) for line in Path(made["pope"][split]).read_text().splitlines()]
        rows = [q | {"image_path": str(images / q["image"])} for q in questions]
        task = f"headwise_pope_{split}"
        metrics = [(f"pope_{m}", f"pope_{m}", True) for m in POPE_METRICS]
        atomic_write(out / f"{task}.yaml", _yaml(task, _jsonl(data / f"pope_{split}.jsonl", rows),
                                                 "pope_doc_to_text", 8, "pope_process_results", metrics))
        tasks.append(task)
    atomic_write(out / "headwise_pope.yaml", "group: headwise_pope\ntask:\n" + "".join(f"  - {t}\n" for t in tasks))
    scenes = [json.loads(line) for line in (out / "scenes" / "scenes.jsonl").read_text().splitlines()]
    rows = [{"image_id": s["image_id"], "image_path": str(images / f"testbed_{s['image_id']:06d}.png"),
             "annotations": str(annotations)} for s in scenes]
    metrics = [(name, f"chair_{name}" if name in ("recall", "len") else name, higher)
               for name, higher in CHAIR_METRICS.items()]
    atomic_write(out / "headwise_chair.yaml", _yaml("headwise_chair", _jsonl(data / "chair.jsonl", rows),
                                                    "chair_doc_to_text", 64, "chair_process_results", metrics))
    atomic_write(out / "utils.py", UTILS)
    return {"include_path": str(out), "tasks": [*tasks, "headwise_chair"], "group": "headwise_pope",
            "scenes": n, "questions": made["pope"], "images": str(images), "annotations": str(annotations)}
