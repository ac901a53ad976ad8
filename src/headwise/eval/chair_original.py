"""CHAIR as the original evaluator computes it (`eval chair --compat original`).

The evaluator OPERA, PAI and VHR report with is the Python 3 port of Rohrbach et al.'s utils/chair.py
(LisaAnne/Hallucination; ported in LALBJ/PAI's chair.py). It reads a caption through NLTK: word_tokenize on the
lowercased text, pos_tag, and WordNet's lemmatizer with the tag's part of speech (nouns when the tag is none of
J, V, N, R). Then it merges listed two-word phrases, drops "seat" when "toilet" is also there, and keeps the words
of its synonyms.txt vocabulary. Its quirks come with it, on purpose: "skiing" is lemmatized to "ski" (a mention
of skis), "men" stays "men" (not a person), "vases" becomes "vas" (not a vase), and "hot dog" is matched only as
two words. docs/parity.md measures how far headwise's default reading is from this one.

NLTK is not a dependency of headwise: this mode needs `pip install nltk` and NLTK's punkt_tab,
averaged_perceptron_tagger_eng and wordnet data where NLTK looks for it (NLTK_DATA); docs/parity.md says how the
parity harness assembles that data from PyPI packages. The vocabulary is the original's synonyms.txt, passed
as `synonyms` (headwise does not ship a copy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from headwise.errors import HeadwiseError
from headwise.eval.chair_tally import tally

# The original's rules (chair.py:167-187): phrases read as one word, and qualifiers that name no object of their own.
DOUBLE_WORDS = ["motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
                "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball", "baseball bat",
                "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone", "mobile phone", "teddy bear",
                "hair drier", "potted plant", "bow tie", "laptop computer", "stove top oven", "home plate",
                "train track"]
ANIMALS = ["bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub"]
VEHICLES = ["jet", "train"]


def double_word_table() -> dict[str, str]:
    table = {phrase: phrase for phrase in DOUBLE_WORDS}
    for animal in ANIMALS:
        table[f"baby {animal}"] = table[f"adult {animal}"] = animal
    for vehicle in VEHICLES:
        table[f"passenger {vehicle}"] = vehicle
    table.update({"bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass"})
    return table


@dataclass
class OriginalVocabulary:
    """synonyms.txt read as the original reads it: each line stripped and split on ", " (so a form written after
    two spaces keeps one and never matches), every form mapped to its line's first entry, later lines winning."""

    objects: set[str]
    inverse: dict[str, str]
    compat: str = "original"


def load_vocabulary(path: str | Path | None) -> OriginalVocabulary:
    if path is None:
        raise HeadwiseError("--compat original scores with the original evaluator's vocabulary: pass --synonyms "
                            "with its synonyms.txt (LisaAnne/Hallucination, data/synonyms.txt).")
    path = Path(path)
    if not path.is_file():
        raise HeadwiseError(f"synonyms file {path} does not exist.")
    objects, inverse = set(), {}
    for line in path.read_text(encoding="utf-8").splitlines():
        forms = line.strip().split(", ")
        objects.update(forms)
        inverse.update((form, forms[0]) for form in forms)
    return OriginalVocabulary(objects, inverse)


def nltk_lemmas(caption: str) -> list[str]:
    """The caption's tokens after the original's NLTK steps: tokenize the lowercased text, tag, lemmatize."""
    try:
        import nltk
        from nltk.stem import WordNetLemmatizer
    except ImportError as err:
        raise HeadwiseError("--compat original needs NLTK, which tokenizes, tags and lemmatizes as the original "
                            "evaluator does: pip install nltk (and its data; see docs/parity.md#chair).") from err
    pos = {"J": "a", "V": "v", "N": "n", "R": "r"}  # wordnet.ADJ, VERB, NOUN, ADV (naming them loads WordNet)
    try:
        tokens = nltk.word_tokenize(caption.lower())
        lemmatizer = WordNetLemmatizer()
        return [lemmatizer.lemmatize(token, pos=pos.get(tag[:1], "n")) for token, tag in nltk.pos_tag(tokens)]
    except LookupError:
        raise HeadwiseError("--compat original needs NLTK's punkt_tab, averaged_perceptron_tagger_eng and wordnet "
                            "data in a folder named by NLTK_DATA (docs/parity.md#chair says how to assemble it from "
                            "PyPI packages).") from None


def caption_words(lemmas: list[str], vocab: OriginalVocabulary) -> tuple[list[str], list[str], list[str]]:
    """(object words, their categories, all words) of a lemmatized caption, by the original's rules."""
    table = double_word_table()
    words, i = [], 0
    while i < len(lemmas):
        pair = " ".join(lemmas[i:i + 2])
        if pair in table:
            words.append(table[pair])
            i += 2
        else:
            words.append(lemmas[i])
            i += 1
    kept = [w for w in words if w != "seat"] if "toilet" in words and "seat" in words else words
    objects = [w for w in kept if w in vocab.objects]
    return objects, [vocab.inverse[w] for w in objects], words


def score(captions: list[dict], annotations, vocab: OriginalVocabulary,
          lemmatize: Callable[[str], list[str]] = nltk_lemmas) -> dict:
    """CHAIR as the original computes it, in the shape of `headwise.eval.chair.score`'s result.

    Ground truth per image: the instance categories through the vocabulary plus the categories the reference
    captions mention. len is the mean number of tokens (punctuation included) after the two-word merge, the
    original's "Len". `lemmatize` is NLTK's pipeline; tests hand it recorded lemmas.
    """
    truths: dict[int, set[str]] = {}

    def truth_of(image_id: int) -> set[str]:
        if image_id not in truths:
            truth = {vocab.inverse.get(name, name) for name in annotations.instances.get(image_id, ())}
            for ref in annotations.references.get(image_id, ()):
                truth.update(caption_words(lemmatize(ref), vocab)[1])
            truths[image_id] = truth
        return truths[image_id]

    def read(text: str) -> tuple[list[tuple[str, str]], int]:
        words, cats, all_words = caption_words(lemmatize(text), vocab)
        return list(zip(words, cats)), len(all_words)

    return tally(captions, truth_of, read)
