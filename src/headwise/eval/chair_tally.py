"""The CHAIR counts, shared by headwise's reading (chair.py) and the original's (chair_original.py)."""

from __future__ import annotations

from collections.abc import Callable

from headwise.errors import HeadwiseError


def tally(captions: list[dict], truth_of: Callable[[int], set[str]],
          read: Callable[[str], tuple[list[tuple[str, str]], int]]) -> dict:
    """CHAIR_S, CHAIR_I, pooled recall and mean length over captions.

    Args:
        captions: [{"image_id", "caption"}], the caption already cut as it is to be scored.
        truth_of: image id -> its ground-truth categories.
        read: caption -> (its mentions [(word, category)], duplicates kept; its length).

    Returns:
        chair_s, chair_i (0 with no mentions), recall, len, n, mentions, hallucinated and per caption its
        image_id, caption, objects, hallucinated and sorted ground_truth.
    """
    if not captions:
        raise HeadwiseError("no captions to score.")
    details = []
    bad_caps = mentions = bad_mentions = covered = truth_total = length = 0
    for cap in captions:
        image_id, text = cap["image_id"], cap["caption"]
        truth = truth_of(image_id)
        objects, size = read(text)
        hallucinated = [(w, c) for w, c in objects if c not in truth]
        mentions += len(objects)
        bad_mentions += len(hallucinated)
        bad_caps += bool(hallucinated)
        covered += len({c for _, c in objects} & truth)
        truth_total += len(truth)
        length += size
        details.append({"image_id": image_id, "caption": text, "objects": [list(o) for o in objects],
                        "hallucinated": [list(h) for h in hallucinated], "ground_truth": sorted(truth)})
    n = len(captions)
    return {"chair_s": bad_caps / n, "chair_i": bad_mentions / mentions if mentions else 0.0,
            "recall": covered / truth_total if truth_total else 0.0, "len": length / n, "n": n,
            "mentions": mentions, "hallucinated": bad_mentions, "captions": details}
