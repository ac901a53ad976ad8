"""CHAIR (Rohrbach et al., 2018): how many of the COCO objects a caption names are not in the image.

Fully offline and deterministic: a regex tokeniser and our own singularizer replace NLTK and `pattern`, so
no data is downloaded and the numbers do not depend on a tagger version. Words go through four steps:

1. lowercase, drop possessive "'s", split into runs of letters ("hot-dog" becomes "hot dog");
2. singularize every token (the vocabulary goes through the same function, so both sides always agree);
3. merge multi-word forms greedily, longest first, before single words ("hot dog" is a hot dog, not a dog);
4. qualifier rules ("baby elephant" is one elephant, not a person) and drop rules ("seat" beside a toilet).

Ground truth per image is the union of the COCO instance categories and the objects found, by the same
pipeline, in the image's reference captions. Metrics:

* CHAIR_S: captions with at least one hallucinated mention / captions.
* CHAIR_I: hallucinated mentions / all object mentions (duplicates count every time).
* recall: pooled, as in the OPERA/PAI evaluator: ground-truth categories a caption mentions, summed over
  captions, divided by ground-truth categories summed over captions.
* len: mean number of whitespace-separated words per caption.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from headwise.errors import HeadwiseError
from headwise.eval.chair_tally import tally
from headwise.eval.records import read_records

DEFAULT_TABLE = Path(__file__).with_name("coco_objects.json")

_IRREGULAR = {
    "men": "man", "women": "woman", "people": "person", "children": "child", "mice": "mouse", "geese": "goose",
    "teeth": "tooth", "feet": "foot", "oxen": "ox", "lice": "louse", "dice": "die", "cacti": "cactus",
    "knives": "knife", "wives": "wife", "lives": "life", "leaves": "leaf", "loaves": "loaf", "shelves": "shelf",
    "wolves": "wolf", "halves": "half", "calves": "calf", "scarves": "scarf", "hooves": "hoof", "elves": "elf",
    "thieves": "thief", "buses": "bus", "busses": "bus", "potatoes": "potato", "tomatoes": "tomato",
    "mangoes": "mango", "heroes": "hero", "volcanoes": "volcano",
}
_INVARIANT = {"sheep", "deer", "fish", "series", "species", "news", "tennis", "this", "his"}
_SENTENCE_END = re.compile(r"[.!?]")


def singularize(word: str) -> str:
    """Singular form of a lowercase English word, by a few rules and a short list of irregular plurals.

    Only consistency matters for matching (text and vocabulary share this function), so odd results on
    words that are never objects ("this" -> "thi") are harmless.
    """
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) < 3 or word in _INVARIANT or word.endswith(("ss", "us")):
        return word
    if word.endswith("men"):  # firemen, policewomen
        return word[:-3] + "man"
    if word.endswith("ies") and len(word) > 4:  # puppies; but ties, pies keep their e
        return word[:-3] + "y"
    if word.endswith("ie") and len(word) > 4:  # doggie and doggies must meet: both become doggy
        return word[:-2] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Lowercase runs of letters, possessive "'s" removed ("the man's hat" -> the, man, hat)."""
    return [word for word, _ in _words_at(text)]


def _words_at(text: str) -> list[tuple[str, int]]:
    """`tokenize`'s words with the index in `text` where each starts."""
    # blank the possessive out (same length), so indices still point into the original text
    text = re.sub(r"['\u2019]s\b", "  ", text.lower())
    return [(m.group(), m.start()) for m in re.finditer(r"[a-z]+", text)]


def _key(phrase: str) -> str:
    return " ".join(singularize(t) for t in tokenize(phrase))


@dataclass
class Synonyms:
    """The vocabulary: normalised (singular, space-joined) surface form -> COCO category, plus the rules.

    A form mapped to None is a `not_objects` phrase: matched so its words are consumed, then ignored.
    """

    forms: dict[str, str | None]
    categories: list[str]
    qualifiers: list[tuple[frozenset[str], frozenset[str]]] = field(default_factory=list)
    drops: list[tuple[str, frozenset[str]]] = field(default_factory=list)

    @cached_property
    def longest(self) -> int:
        return max(len(f.split()) for f in self.forms)

    def category_of(self, name: str) -> str:
        """The category of a COCO category name or surface form; unknown names are returned unchanged."""
        return name if name in self.categories else self.forms.get(_key(name)) or name


def _add_form(forms: dict, form: str, category: str | None, where: str) -> None:
    key = _key(form)
    if not key:
        raise HeadwiseError(f"{where}: the surface form {form!r} has no letters.")
    if forms.get(key, category) != category:
        raise HeadwiseError(f"{where}: {form!r} is already a form of {forms[key]!r}, so it cannot also name "
                            f"{category!r}.")
    forms[key] = category


def _rules(table: dict, where: str) -> tuple[list, list, list[str]]:
    try:
        quals = [(frozenset(map(_key, q["words"])), frozenset(q["before"])) for q in table.get("qualifiers", [])]
        drops = [(_key(d["word"]), frozenset(d["categories"])) for d in table.get("drop_when_present", [])]
        not_objects = [str(p) for p in table.get("not_objects", [])]
    except (KeyError, TypeError) as err:
        raise HeadwiseError(f"{where}: malformed rules ({err!r}); see headwise/eval/coco_objects.json.") from err
    return quals, drops, not_objects


def load_synonyms(path: str | Path | None = None) -> Synonyms:
    """Load the CHAIR vocabulary.

    Args:
        path: None for headwise's own table (`coco_objects.json`). Otherwise a file in the format of the
            original CHAIR evaluator's `synonyms.txt`: one line per category, comma-separated surface forms,
            the category name first; blank lines are ignored. The qualifier, drop and not-object rules of
            our table still apply, since synonyms.txt has no place for them.

    Returns:
        The vocabulary.

    Raises:
        HeadwiseError: the file is missing or malformed (the message names the file and line).
    """
    table = json.loads(DEFAULT_TABLE.read_text(encoding="utf-8"))
    quals, drops, not_objects = _rules(table, str(DEFAULT_TABLE))
    forms: dict[str, str | None] = {}
    if path is None:
        for category, surfaces in table["categories"].items():
            for form in [category, *surfaces]:
                _add_form(forms, form, category, f"{DEFAULT_TABLE} category {category!r}")
        categories = list(table["categories"])
    else:
        categories = _read_synonyms_txt(Path(path), forms)
    for phrase in not_objects:
        forms.setdefault(_key(phrase), None)  # a user table that lists the phrase as an object wins
    return Synonyms(forms, categories, quals, drops)


def _read_synonyms_txt(path: Path, forms: dict) -> list[str]:
    if not path.is_file():
        raise HeadwiseError(f"synonyms file {path} does not exist.")
    categories = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if fields[-1] == "":
            fields.pop()  # tolerate a trailing comma
        where = f"{path} line {number}"
        if "" in fields:
            raise HeadwiseError(f"{where}: empty surface form; expected 'category, form, form, ...'.")
        category = fields[0].lower()
        if category in categories:
            raise HeadwiseError(f"{where}: category {category!r} is listed twice.")
        categories.append(category)
        for form in fields:
            _add_form(forms, form, category, where)
    if not categories:
        raise HeadwiseError(f"synonyms file {path} lists no categories.")
    return categories


COMPAT = ("headwise", "original")


def load_vocabulary(path: str | Path | None = None, compat: str = "headwise"):
    """The vocabulary of a CHAIR reading: headwise's (`load_synonyms`) or, with compat "original", the original
    evaluator's synonyms.txt read its way (`headwise.eval.chair_original`); `score` follows the one it gets."""
    if compat not in COMPAT:
        raise HeadwiseError(f"unknown CHAIR compat {compat!r}; choose one of {', '.join(COMPAT)}.")
    if compat == "original":
        from headwise.eval.chair_original import load_vocabulary as load_original

        return load_original(path)
    return load_synonyms(path)


def extract_objects(text: str, synonyms: Synonyms) -> list[tuple[str, str]]:
    """The COCO object mentions in `text`, in order, duplicates kept.

    Args:
        text: a caption.
        synonyms: the vocabulary from `load_synonyms`.

    Returns:
        (surface words as written, lowercased; category) per mention, e.g. ("teddy bears", "teddy bear").
    """
    return [(surface, category) for surface, category, _ in find_mentions(text, synonyms)]


def find_mentions(text: str, synonyms: Synonyms) -> list[tuple[str, str, int]]:
    """`extract_objects` with where each mention starts: (surface, category, index of its first letter in text).

    A qualified mention ("baby elephant") starts at its qualifier, as CHAIR reads the two words as one.
    """
    words = _words_at(text)
    raw = [w for w, _ in words]
    norm = [singularize(t) for t in raw]
    units: list[tuple[str, str, str | None, int]] = []  # (surface, normalised key, category or None, start)
    i, longest = 0, synonyms.longest
    while i < len(norm):
        for n in range(min(longest, len(norm) - i), 0, -1):
            key = " ".join(norm[i:i + n])
            if key in synonyms.forms or n == 1:
                units.append((" ".join(raw[i:i + n]), key, synonyms.forms.get(key), words[i][1]))
                i += n
                break
    units = _apply_qualifiers(units, synonyms)
    present = {u[2] for u in units if u[2]}
    dropped = {word for word, cats in synonyms.drops if cats & present}
    return [(surface, cat, start) for surface, key, cat, start in units if cat and key not in dropped]


def _apply_qualifiers(units: list[tuple], synonyms: Synonyms) -> list[tuple]:
    out: list[tuple] = []
    for unit in units:
        prev = out[-1] if out else None
        if prev and unit[2] and any(prev[1] in words and unit[2] in before for words, before in synonyms.qualifiers):
            out[-1] = (f"{prev[0]} {unit[0]}", unit[1], unit[2], prev[3])  # the qualifier joins the noun's mention
        else:
            out.append(unit)
    return out


def drop_incomplete_sentence(text: str) -> str:
    """Cut text after the last '.', '!' or '?' (the OPERA convention for length-capped captions).

    A caption without any sentence end is kept whole rather than scored as empty.
    """
    stripped = text.rstrip()
    ends = list(_SENTENCE_END.finditer(stripped))
    if not ends or ends[-1].end() == len(stripped):
        return stripped
    return stripped[:ends[-1].end()]


@dataclass
class Annotations:
    """COCO annotations as read from disk: instance category names and reference captions per image id."""

    instances: dict[int, set[str]]
    references: dict[int, list[str]]
    file_names: dict[str, int]
    source: str = ""

    def __contains__(self, image_id: int) -> bool:
        return image_id in self.instances or image_id in self.references

    def resolve(self, value: Any) -> int | None:
        """Image id for an int, a digit string, or a file name (full or base name); None when unknown."""
        if isinstance(value, bool):
            return None
        if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
            image_id = int(value)
            return image_id if image_id in self else None
        if isinstance(value, str):
            return self.file_names.get(value) or self.file_names.get(Path(value).name)
        return None

    def ground_truth(self, image_id: int, synonyms: Synonyms) -> set[str]:
        """Instance categories (through the vocabulary) plus the objects named in the reference captions."""
        truth = {synonyms.category_of(name) for name in self.instances.get(image_id, ())}
        for ref in self.references.get(image_id, ()):
            truth.update(cat for _, cat in extract_objects(ref, synonyms))
        return truth


def load_annotations(directory: str | Path) -> Annotations:
    """Read every `instances*.json` and `captions*.json` (standard COCO format) in a directory.

    Args:
        directory: e.g. a folder holding instances_val2014.json and captions_val2014.json.

    Returns:
        The annotations of all files together.

    Raises:
        HeadwiseError: the directory is missing, holds none of those files, or a file is not COCO format.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise HeadwiseError(f"annotation directory {directory} does not exist.")
    instance_files = sorted(directory.glob("instances*.json"))
    caption_files = sorted(directory.glob("captions*.json"))
    if not instance_files and not caption_files:
        raise HeadwiseError(f"{directory} holds no COCO annotations; expected instances_*.json and/or "
                            "captions_*.json files (e.g. instances_val2014.json, captions_val2014.json).")
    ann = Annotations({}, {}, {}, str(directory))
    for path in instance_files + caption_files:
        data = _read_coco(path, "category_id" if path in instance_files else "caption")
        try:
            _add_file(ann, data, path, is_instances=path in instance_files)
        except (KeyError, TypeError, AttributeError) as err:
            raise HeadwiseError(f"{path} is not a COCO file ({type(err).__name__}: {err}); expected 'images' with "
                                "'id' and 'file_name', and 'categories' with 'id' and 'name'.") from err
    return ann


def _read_coco(path: Path, needed: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HeadwiseError(f"{path} is not valid JSON: {err}.") from err
    anns = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(anns, list) or any(not isinstance(a, dict) or "image_id" not in a or needed not in a
                                         for a in anns):
        raise HeadwiseError(f"{path} is not a COCO file: expected 'annotations', a list of objects with "
                            f"'image_id' and '{needed}'.")
    return data


def _add_file(ann: Annotations, data: dict, path: Path, is_instances: bool) -> None:
    if is_instances:
        names = {c["id"]: c["name"] for c in data.get("categories", [])}
        for a in data["annotations"]:
            if a["category_id"] not in names:
                raise HeadwiseError(f"{path}: category_id {a['category_id']} is not in its 'categories'.")
            ann.instances.setdefault(a["image_id"], set()).add(names[a["category_id"]].lower())
    else:
        for a in data["annotations"]:
            ann.references.setdefault(a["image_id"], []).append(a["caption"])
    # Images without annotations still count as known: their ground truth is empty, not missing.
    for img in data.get("images", []):
        ann.instances.setdefault(img["id"], set())
        if "file_name" in img:
            ann.file_names[img["file_name"]] = img["id"]


def load_captions(path: str | Path, annotations: Annotations) -> list[dict]:
    """Read generated captions: JSONL with "image_id" and "caption" per line (a JSON list is accepted too).

    image_id may be the COCO id (int or digit string) or the image's file name. An id that is not in the
    annotations is an error, not a skip: scored against an empty ground truth, every mention would count
    as a hallucination.

    Raises:
        HeadwiseError: naming the file and line of a malformed record or an unknown image.
    """
    captions = []
    for number, rec in read_records(path, "captions"):
        where = f"captions file {path} line {number}"
        if "image_id" not in rec or not isinstance(rec.get("caption"), str):
            raise HeadwiseError(f"{where}: expected {{\"image_id\": ..., \"caption\": \"...\"}}.")
        image_id = annotations.resolve(rec["image_id"])
        if image_id is None:
            raise HeadwiseError(f"{where}: image_id {rec['image_id']!r} is not in the annotations in "
                                f"{annotations.source or 'the annotation directory'}.")
        captions.append({"image_id": image_id, "caption": rec["caption"]})
    if not captions:
        raise HeadwiseError(f"captions file {path} holds no captions.")
    return captions


def score(captions: list[dict], annotations: Annotations, synonyms: Synonyms,
          drop_incomplete: bool = False) -> dict:
    """CHAIR over generated captions.

    Args:
        captions: [{"image_id": int, "caption": str}], image ids present in `annotations`.
        annotations: from `load_annotations`.
        synonyms: from `load_synonyms`, or from `load_vocabulary(..., "original")` for the original's reading.
        drop_incomplete: cut each caption after its last sentence end before scoring (OPERA convention).

    Returns:
        chair_s, chair_i, recall (pooled, see the module docstring), len, n, mentions, hallucinated, and
        "captions": per caption its image_id, scored caption, objects [[word, category]], hallucinated
        [[word, category]] and sorted ground_truth. Fractions are in [0, 1]; CHAIR_I is 0 with no mentions.
    """
    if drop_incomplete:
        captions = [dict(c, caption=drop_incomplete_sentence(c["caption"])) for c in captions]
    if getattr(synonyms, "compat", "headwise") == "original":
        from headwise.eval.chair_original import score as score_original

        return score_original(captions, annotations, synonyms)
    truths: dict[int, set[str]] = {}

    def truth_of(image_id: int) -> set[str]:
        if image_id not in truths:
            truths[image_id] = annotations.ground_truth(image_id, synonyms)
        return truths[image_id]

    return tally(captions, truth_of, lambda text: (extract_objects(text, synonyms), len(text.split())))


def score_chair_files(captions: str | Path, annotations: str | Path, synonyms: str | Path | None = None,
                      drop_incomplete: bool = False, compat: str = "headwise") -> dict:
    """Load a captions JSONL, a COCO annotation directory and a vocabulary, and score CHAIR (see `score`)."""
    vocab = load_vocabulary(synonyms, compat)
    ann = load_annotations(annotations)
    return score(load_captions(captions, ann), ann, vocab, drop_incomplete=drop_incomplete)
