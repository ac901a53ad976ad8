import json
import re

import pytest

from headwise.eval import chair, pope
from headwise.testbed.dataset import make, pope_questions
from headwise.testbed.scenes import categories, render, sample_scene, world


def asked(text: str) -> str:
    return re.fullmatch(r"Is there (?:a pair of |an? )(.+) in the image\?", text).group(1)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb")
    make(out, n=40, seed=5, progress=False)
    return out


def test_scenes_are_deterministic_for_a_seed():
    a, b = sample_scene(3, 17), sample_scene(3, 17)
    assert a == b and list(render(a).getdata()) == list(render(b).getdata())
    assert sample_scene(4, 17) != a


def test_mapping_covers_all_80_categories():
    w = world()
    assert len(w["coco_ids"]) == 80
    assert set(w["emoji"]) | set(w["missing"]) == set(w["coco_ids"]) and not set(w["emoji"]) & set(w["missing"])
    assert len(categories()) == len(w["emoji"]) >= 60


def test_annotations_agree_with_what_is_drawn(bench):
    inst = json.loads((bench / "annotations" / "instances_testbed.json").read_text())
    scenes = [json.loads(line) for line in (bench / "scenes.jsonl").read_text().splitlines()]
    by_image = {}
    for a in inst["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    names = {c["id"]: c["name"] for c in inst["categories"]}
    for img, scene in zip(inst["images"], scenes):
        anns = by_image[img["id"]]
        assert 2 <= len(anns) <= 7 and len(anns) == len(scene["objects"])
        assert sorted(names[a["category_id"]] for a in anns) == sorted(o[0] for o in scene["objects"])
        for a in anns:
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and x + w <= img["width"] and y + h <= img["height"] and w > 4 and h > 4
    # the pixels inside a box are not just background: the pictogram was painted there
    from PIL import Image
    import numpy as np
    first = np.asarray(Image.open(bench / "images" / inst["images"][0]["file_name"])).astype(float)
    a = by_image[inst["images"][0]["id"]][0]
    x, y, w, h = map(int, a["bbox"])
    assert first[y:y + h, x:x + w].std() > 20


def test_reference_captions_score_perfectly_with_chair(bench):
    ann = chair.load_annotations(bench / "annotations")
    caps = json.loads((bench / "annotations" / "captions_testbed.json").read_text())["annotations"]
    result = chair.score([{"image_id": c["image_id"], "caption": c["caption"]} for c in caps], ann, chair.load_synonyms())
    assert result["chair_i"] == 0 and result["recall"] == 1.0
    assert len({c["caption"] for c in caps if c["image_id"] == 0}) == 5  # varied phrasing


@pytest.mark.parametrize("split", ["random", "popular", "adversarial"])
def test_pope_files_are_balanced_and_correct(bench, split):
    qs = pope.load_questions(bench / f"pope_{split}.jsonl")
    assert sum(q["label"] == "yes" for q in qs) == sum(q["label"] == "no" for q in qs)
    scenes = {f"testbed_{s['image_id']:06d}.png": {o[0] for o in s["objects"]}
              for s in map(json.loads, (bench / "scenes.jsonl").read_text().splitlines())}
    for q in qs:
        obj = asked(q["text"])
        assert (obj in scenes[q["image"]]) == (q["label"] == "yes"), q


def test_adversarial_negatives_co_occur_more_than_random_ones():
    scenes = [sample_scene(9, i) for i in range(150)]
    qs = pope_questions(scenes, seed=9)
    from collections import Counter
    co = Counter()
    for s in scenes:
        for a in s.categories:
            for b in s.categories:
                co[a, b] += a != b

    def mean_cooc(split):
        vals = []
        for q in qs[split]:
            if q["label"] == "no":
                img = int(q["image"][8:14])
                obj = asked(q["text"])
                vals.append(sum(co[obj, c] for c in scenes[img].categories))
        return sum(vals) / len(vals)
    assert mean_cooc("adversarial") > 2 * mean_cooc("random")
