"""Reading the JSONL (or JSON list) files of captions, questions and answers, with errors that name the line."""

from __future__ import annotations

import json
from pathlib import Path

from headwise.errors import HeadwiseError


def read_records(path: str | Path, what: str) -> list[tuple[int, dict]]:
    """Read a JSONL file (or a JSON list) of objects, as (line or item number, object) pairs.

    Raises:
        HeadwiseError: the file is missing, or a line is not a JSON object (the message names file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise HeadwiseError(f"{what} file {path} does not exist.")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            items = list(enumerate(json.loads(text), start=1))
        except json.JSONDecodeError as err:
            raise HeadwiseError(f"{what} file {path} line {err.lineno}: invalid JSON ({err.msg}).") from err
        label = "item"
    else:
        items = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append((number, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise HeadwiseError(f"{what} file {path} line {number}: invalid JSON ({err.msg}).") from err
        label = "line"
    for number, obj in items:
        if not isinstance(obj, dict):
            raise HeadwiseError(f"{what} file {path} {label} {number}: expected a JSON object.")
    return items
