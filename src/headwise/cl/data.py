"""Task sequences: the TRACE layout, a SuperNI-style layout, encoding and left-padded batches.

TRACE layout: DIR/<task>/{train,eval,test}.json, each a JSON list of {"prompt", "answer"} objects.
Optional DIR/orders.json ({"1": [task, ...], ...}) and DIR/metrics.json ({task: metric}).
SuperNI-style layout: DIR/<task>.json in Super-NaturalInstructions' format ("Definition" and
"Instances" with "input" and "output"), split by a hash of the instance id (80/10/10).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from headwise.cl.scoring import METRICS
from headwise.errors import HeadwiseError

SPLITS = {"train": "train.json", "eval": "eval.json", "test": "test.json"}
TRACE_METRICS = {"C-STANCE": "first_char", "FOMC": "first_char", "MeetingBank": "rouge_l", "Py150": "edit_similarity",
                 "ScienceQA": "first_char", "NumGLUE-cm": "accuracy", "NumGLUE-ds": "accuracy", "20Minuten": "sari"}
TRACE_ORDERS = {"1": ["C-STANCE", "FOMC", "MeetingBank", "Py150", "ScienceQA", "NumGLUE-cm", "NumGLUE-ds", "20Minuten"],
                "2": ["NumGLUE-cm", "NumGLUE-ds", "FOMC", "20Minuten", "C-STANCE", "Py150", "MeetingBank", "ScienceQA"]}
SUPERNI_ORDERS = {"1": ["task1572", "task363", "task1290", "task181", "task002", "task1510", "task073", "task748",
                        "task511", "task591", "task195", "task875"],
                  "2": ["task748", "task073", "task1572", "task195", "task591", "task363", "task1510", "task181",
                        "task511", "task002", "task1290", "task875"]}
SUPERNI_ACCURACY = {"task363", "task875", "task195"}


@dataclass
class Task:
    name: str
    metric: str
    train: list[dict]
    eval: list[dict]
    test: list[dict]


def _item_lines(text: str) -> list[int]:
    """Line number of the start of each element of a top-level JSON list (for error messages)."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    lines = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return lines
        lines.append(text.count("\n", 0, pos) + 1)
        _, pos = decoder.raw_decode(text, pos)


def read_items(path: Path) -> list[dict]:
    """A JSON list of {"prompt": str, "answer": str}; errors name the file and the line."""
    if not path.is_file():
        raise HeadwiseError(f"task file {path} is missing.")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise HeadwiseError(f"{path} line {err.lineno}: malformed JSON ({err.msg}).") from err
    if not isinstance(data, list):
        raise HeadwiseError(f"{path} line 1: expected a JSON list of {{\"prompt\", \"answer\"}} objects.")
    lines = _item_lines(text)
    for i, item in enumerate(data):
        if not (isinstance(item, dict) and isinstance(item.get("prompt"), str) and isinstance(item.get("answer"), str)):
            raise HeadwiseError(f"{path} line {lines[i]}: item {i} needs string fields \"prompt\" and \"answer\".")
        if not item["answer"].strip():
            raise HeadwiseError(f"{path} line {lines[i]}: item {i} has an empty answer.")
    return [{"prompt": it["prompt"], "answer": it["answer"]} for it in data]


def _order(names: list[str], orders_file: Path, builtin: dict[str, list[str]], order: str) -> list[str]:
    orders = builtin
    if orders_file.is_file():
        try:
            orders = {str(k): v for k, v in json.loads(orders_file.read_text(encoding="utf-8")).items()}
        except (json.JSONDecodeError, AttributeError) as err:
            raise HeadwiseError(f"{orders_file}: expected a JSON object {{\"1\": [task, ...]}} ({err}).") from err
    if str(order) in orders and set(orders[str(order)]) <= set(names):
        return list(orders[str(order)])
    if str(order) == "1" and not orders_file.is_file():
        return sorted(names)
    raise HeadwiseError(f"task order {order} is not defined for these tasks; add it to {orders_file}.")


def _check(task: Task, where: Path) -> Task:
    if task.metric not in METRICS:
        raise HeadwiseError(f"{where}: unknown metric {task.metric!r} for task {task.name}; use one of {', '.join(METRICS)}.")
    for part in ("train", "test"):
        if not getattr(task, part):
            raise HeadwiseError(f"task {task.name} in {where} has no {part} items.")
    return task


def load_trace(root: str | Path, order: str = "1") -> list[Task]:
    root = Path(root)
    if not root.is_dir():
        raise HeadwiseError(f"benchmark folder {root} does not exist.")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise HeadwiseError(f"{root} holds no task folders (expected <task>/train.json, eval.json, test.json).")
    metrics_file = root / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
    tasks = []
    for name in _order(names, root / "orders.json", TRACE_ORDERS, order):
        d = root / name
        parts = {part: read_items(d / f) if (part != "eval" or (d / f).is_file()) else [] for part, f in SPLITS.items()}
        tasks.append(_check(Task(name, metrics.get(name, TRACE_METRICS.get(name, "accuracy")), **parts), d))
    return tasks


def load_superni(root: str | Path, order: str = "1") -> list[Task]:
    root = Path(root)
    if not root.is_dir():
        raise HeadwiseError(f"benchmark folder {root} does not exist.")
    files = {p.stem.split("_")[0]: p for p in sorted(root.glob("task*.json"))}
    if not files:
        raise HeadwiseError(f"{root} holds no task*.json files in Super-NaturalInstructions format.")
    tasks = []
    for name in _order(list(files), root / "orders.json", SUPERNI_ORDERS, order):
        path = files[name]
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise HeadwiseError(f"{path} line {err.lineno}: malformed JSON ({err.msg}).") from err
        if not isinstance(raw, dict) or not isinstance(raw.get("Instances"), list):
            raise HeadwiseError(f"{path} line 1: expected an object with \"Definition\" and \"Instances\".")
        definition = " ".join(raw.get("Definition") or [])
        parts = {"train": [], "eval": [], "test": []}
        for i, inst in enumerate(raw["Instances"]):
            output = inst.get("output") if isinstance(inst, dict) else None
            if not (isinstance(inst, dict) and isinstance(inst.get("input"), str) and output):
                raise HeadwiseError(f"{path}: instance {i} needs an \"input\" string and a non-empty \"output\".")
            answer = output[0] if isinstance(output, list) else output
            bucket = int(hashlib.sha1(str(inst.get("id", i)).encode()).hexdigest(), 16) % 10
            part = "test" if bucket == 0 else "eval" if bucket == 1 else "train"
            parts[part].append({"prompt": f"{definition}\n\nInput: {inst['input']}\nOutput: ", "answer": answer})
        tasks.append(_check(Task(name, "accuracy" if name in SUPERNI_ACCURACY else "rouge_l", **parts), path))
    return tasks


# ---- encoding -------------------------------------------------------------------------------------

def _ids(tokenizer, text: str, special: bool) -> list[int]:
    ids = tokenizer(text, add_special_tokens=special).input_ids
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    return list(ids[0] if ids and isinstance(ids[0], list) else ids)


def eos_id(tokenizer) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    return 2 if eos is None else int(eos)


def pad_id(tokenizer) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return eos_id(tokenizer) if pad is None else int(pad)


def encode(tokenizer, item: dict, max_len: int) -> tuple[list[int], list[int]]:
    """Token ids and labels of prompt + answer + EOS; labels are -100 on the prompt.

    Prompt and answer are tokenised apart, so the label span is exact (TRACE tokenises the joined
    string and can be one token off at the boundary). Long sequences lose their start, as in TRACE.
    """
    prompt = _ids(tokenizer, item["prompt"], True)
    answer = _ids(tokenizer, item["answer"], False) + [eos_id(tokenizer)]
    ids = (prompt + answer)[-max_len:]
    labels = ([-100] * len(prompt) + answer)[-max_len:]
    return ids, labels


def encode_prompt(tokenizer, prompt: str, max_len: int) -> list[int]:
    return _ids(tokenizer, prompt, True)[-max_len:]


def collate(rows: list[tuple[list[int], list[int]]], pad: int) -> dict[str, torch.Tensor]:
    """Left-padded batch with padding-aware position ids, so right-aligned indices line up across batches."""
    n = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), n), pad, dtype=torch.long)
    labels = torch.full((len(rows), n), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        input_ids[i, n - len(ids):] = torch.tensor(ids)
        labels[i, n - len(lab):] = torch.tensor(lab)
        mask[i, n - len(ids):] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    return {"input_ids": input_ids, "attention_mask": mask, "position_ids": position_ids, "labels": labels}
