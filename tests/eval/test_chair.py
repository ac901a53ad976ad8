"""CHAIR on hand-made COCO files whose answers are worked out by hand."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from headwise.cli.eval import app
from headwise.errors import HeadwiseError
from headwise.eval.chair import (
    drop_incomplete_sentence,
    extract_objects,
    load_annotations,
    load_captions,
    load_synonyms,
    score,
    score_chair_files,
    singularize,
)

CATEGORIES = [{"id": i, "name": n} for i, n in enumerate(
    ["person", "dog", "frisbee", "cat", "elephant", "hot dog", "teddy bear", "traffic light", "car"], start=1)]
IDS = {c["name"]: c["id"] for c in CATEGORIES}


@pytest.fixture(scope="module")
def vocab():
    return load_synonyms()


def write_coco(directory, instances, references=None, extra_images=()):
    """instances: {image_id: [category names]}; references: {image_id: [captions]}."""
    directory.mkdir(parents=True, exist_ok=True)
    ids = sorted(set(instances) | set(references or {}) | set(extra_images))
    images = [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in ids]
    anns = [{"id": k, "image_id": i, "category_id": IDS[name]}
            for k, (i, name) in enumerate((i, n) for i, names in instances.items() for n in names)]
    (directory / "instances_val2014.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": CATEGORIES}))
    if references is not None:
        caps = [{"id": k, "image_id": i, "caption": c}
                for k, (i, c) in enumerate((i, c) for i, cs in references.items() for c in cs)]
        (directory / "captions_val2014.json").write_text(json.dumps({"images": images, "annotations": caps}))
    return directory


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("plural, singular", [
    ("dogs", "dog"), ("puppies", "puppy"), ("ties", "tie"), ("men", "man"), ("women", "woman"),
    ("firemen", "fireman"), ("people", "person"), ("children", "child"), ("mice", "mouse"), ("geese", "goose"),
    ("teeth", "tooth"), ("feet", "foot"), ("knives", "knife"), ("calves", "calf"), ("buses", "bus"), ("bus", "bus"),
    ("glasses", "glass"), ("benches", "bench"), ("toothbrushes", "toothbrush"), ("boxes", "box"),
    ("horses", "horse"), ("vases", "vase"), ("skis", "ski"), ("sheep", "sheep"), ("tennis", "tennis"),
    ("giraffes", "giraffe"), ("frisbees", "frisbee"), ("grass", "grass"), ("tvs", "tv"),
])
def test_singularize(plural, singular):
    assert singularize(plural) == singular


def test_extract_keeps_order_duplicates_and_surface_forms(vocab):
    assert extract_objects("A dog catches a frisbee next to a cat.", vocab) == [
        ("dog", "dog"), ("frisbee", "frisbee"), ("cat", "cat")]
    assert extract_objects("Two dogs. Another dog, and a puppy!", vocab) == [
        ("dogs", "dog"), ("dog", "dog"), ("puppy", "dog")]
    assert extract_objects("The man's skis and the women's TVs", vocab) == [
        ("man", "person"), ("skis", "skis"), ("women", "person"), ("tvs", "tv")]


@pytest.mark.parametrize("text, expected", [
    ("a hot dog on a plate", [("hot dog", "hot dog")]),
    ("two hot-dogs and a dog", [("hot dogs", "hot dog"), ("dog", "dog")]),
    ("a teddy bear beside a bear", [("teddy bear", "teddy bear"), ("bear", "bear")]),
    ("red traffic lights", [("traffic lights", "traffic light")]),
    ("a microwave oven and a toaster oven", [("microwave oven", "microwave"), ("toaster oven", "toaster")]),
    ("a pickup truck behind a double decker bus", [("pickup truck", "truck"), ("double decker bus", "bus")]),
    ("a train on the train tracks", [("train", "train")]),  # "train track" is a place, not a train
    ("wine glasses and a cell phone", [("wine glasses", "wine glass"), ("cell phone", "cell phone")]),
])
def test_multi_word_forms_merge_before_single_words(vocab, text, expected):
    assert extract_objects(text, vocab) == expected


@pytest.mark.parametrize("text, expected", [
    ("a baby elephant", [("baby elephant", "elephant")]),
    ("adult giraffes", [("adult giraffes", "giraffe")]),
    ("a baby in a crib", [("baby", "person")]),  # only before an animal is "baby" a qualifier
    ("a large passenger jet", [("passenger jet", "airplane")]),
    ("a man wearing a bow tie", [("man", "person"), ("bow tie", "tie")]),
    ("a toilet seat", [("toilet seat", "toilet")]),
    ("a toilet with its seat up", [("toilet", "toilet")]),  # the seat of a toilet is no chair
    ("a seat next to a table", [("seat", "chair"), ("table", "dining table")]),
])
def test_qualifier_and_drop_rules(vocab, text, expected):
    assert extract_objects(text, vocab) == expected


def test_hand_computed_chair(tmp_path, vocab):
    ann = load_annotations(write_coco(tmp_path / "coco", {1: ["dog", "frisbee"], 2: ["person", "car"]},
                                      {1: ["A dog with a frisbee."], 2: ["A man by his car and his dog."]}))
    caps = [{"image_id": 1, "caption": "A dog catches a frisbee next to a cat."},  # cat hallucinated
            {"image_id": 2, "caption": "A woman and her dog near a car."},  # dog is in the reference caption
            {"image_id": 2, "caption": "A man."}]
    r = score(caps, ann, vocab)
    assert r["chair_s"] == pytest.approx(1 / 3)
    assert r["chair_i"] == pytest.approx(1 / 7)  # 1 hallucinated of 3 + 3 + 1 mentions
    assert r["recall"] == pytest.approx((2 + 3 + 1) / (2 + 3 + 3))  # pooled over captions
    assert r["len"] == pytest.approx((9 + 8 + 2) / 3)
    assert (r["n"], r["mentions"], r["hallucinated"]) == (3, 7, 1)
    first = r["captions"][0]
    assert first["hallucinated"] == [["cat", "cat"]]
    assert first["ground_truth"] == ["dog", "frisbee"]
    assert first["objects"] == [["dog", "dog"], ["frisbee", "frisbee"], ["cat", "cat"]]
    assert r["captions"][1]["ground_truth"] == ["car", "dog", "person"]


def test_single_caption_chair_i_is_one_third(tmp_path, vocab):
    ann = load_annotations(write_coco(tmp_path, {1: ["dog", "frisbee"]}))
    r = score([{"image_id": 1, "caption": "A dog catches a frisbee next to a cat."}], ann, vocab)
    assert (r["chair_s"], r["chair_i"]) == (1.0, pytest.approx(1 / 3))


def test_hot_dog_image_with_no_dog_is_not_a_dog_hallucination(tmp_path, vocab):
    ann = load_annotations(write_coco(tmp_path, {1: ["hot dog", "teddy bear"]}))
    r = score([{"image_id": 1, "caption": "A hot dog and teddy bears."},
               {"image_id": 1, "caption": "A dog and a bear."}], ann, vocab)
    assert r["captions"][0]["hallucinated"] == []
    assert r["captions"][1]["hallucinated"] == [["dog", "dog"], ["bear", "bear"]]
    assert r["chair_s"] == 0.5


def test_drop_incomplete_sentence(tmp_path, vocab):
    assert drop_incomplete_sentence("A dog. A cat and a") == "A dog."
    assert drop_incomplete_sentence("A dog! A cat.") == "A dog! A cat."
    assert drop_incomplete_sentence("A dog and a cat") == "A dog and a cat"  # nothing complete: keep it
    ann = load_annotations(write_coco(tmp_path, {1: ["dog"]}))
    caps = [{"image_id": 1, "caption": "A dog runs. There is a cat"}]
    assert score(caps, ann, vocab)["chair_s"] == 1.0
    assert score(caps, ann, vocab, drop_incomplete=True)["chair_s"] == 0.0


def test_external_synonyms_txt(tmp_path):
    path = tmp_path / "synonyms.txt"
    path.write_text("person, girl, boy, man, woman\n\n  dog , puppy, doggie  \nhot dog, hotdog,\nbear, panda\n"
                    "teddy bear, teddybear\n")
    vocab = load_synonyms(path)
    assert vocab.categories == ["person", "dog", "hot dog", "bear", "teddy bear"]
    assert extract_objects("A girl, two doggies, a hotdog and a panda; no cat.", vocab) == [
        ("girl", "person"), ("doggies", "dog"), ("hotdog", "hot dog"), ("panda", "bear")]
    assert extract_objects("a woman with a frisbee", vocab) == [("woman", "person")]  # not in this vocabulary


@pytest.mark.parametrize("text, message", [
    ("person, man\ndog, , puppy\n", "line 2: empty surface form"),
    ("person, man\n\ndog, man\n", "line 3: 'man' is already a form of 'person'"),
    ("person\nperson, man\n", "line 2: category 'person' is listed twice"),
    ("person, 42\n", "line 1: the surface form '42' has no letters"),
])
def test_malformed_synonyms_name_the_line(tmp_path, text, message):
    path = tmp_path / "synonyms.txt"
    path.write_text(text)
    with pytest.raises(HeadwiseError, match=message) as err:
        load_synonyms(path)
    assert str(path) in str(err.value)


def test_default_table_has_the_80_coco_categories(vocab):
    assert len(vocab.categories) == 80
    for name in ("person", "dining table", "tv", "cell phone", "hair drier", "toothbrush", "sports ball", "skis"):
        assert name in vocab.categories
        assert extract_objects(f"a {name}", vocab) == [(name, name)]


def test_annotations_union_instances_and_references(tmp_path, vocab):
    ann = load_annotations(write_coco(tmp_path, {5: ["elephant"]}, {5: ["A baby elephant near a car."],
                                                                    6: ["Nothing to see."]}, extra_images=[7]))
    assert ann.ground_truth(5, vocab) == {"elephant", "car"}  # the "baby" qualifier does not add a person
    assert ann.ground_truth(6, vocab) == set()
    assert 7 in ann and 8 not in ann
    assert ann.resolve("COCO_val2014_000000000005.jpg") == 5
    assert ann.resolve("/data/val2014/COCO_val2014_000000000006.jpg") == 6
    assert ann.resolve("5") == 5 and ann.resolve(8) is None


def test_annotation_dir_without_coco_files(tmp_path):
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(HeadwiseError, match="expected instances_.*json and/or captions_.*json"):
        load_annotations(tmp_path)
    with pytest.raises(HeadwiseError, match="does not exist"):
        load_annotations(tmp_path / "nope")


@pytest.mark.parametrize("content, message", [
    ({"annotations": [{"image_id": 1}]}, "instances_x.json is not a COCO file: expected 'annotations'"),
    ({"annotations": [{"image_id": 1, "category_id": 3}], "categories": [{"id": 1, "name": "dog"}]},
     "instances_x.json: category_id 3 is not in its 'categories'"),
    ({"annotations": [], "categories": [{"id": 1}]}, r"instances_x.json is not a COCO file \(KeyError: 'name'\)"),
    ({"annotations": [], "images": [{"file_name": "a.jpg"}]}, r"is not a COCO file \(KeyError: 'id'\)"),
])
def test_annotation_file_not_coco(tmp_path, content, message):
    (tmp_path / "instances_x.json").write_text(json.dumps(content))
    with pytest.raises(HeadwiseError, match=message):
        load_annotations(tmp_path)


def test_captions_file_errors_name_file_and_line(tmp_path):
    ann = load_annotations(write_coco(tmp_path / "coco", {1: ["dog"]}))
    bad = tmp_path / "caps.jsonl"
    bad.write_text('{"image_id": 1, "caption": "a dog"}\n\n{"image_id": 1, "caption": \n')
    with pytest.raises(HeadwiseError, match=r"caps.jsonl line 3: invalid JSON"):
        load_captions(bad, ann)
    write_jsonl(bad, [{"image_id": 1, "caption": "a dog"}, {"image_id": 1}])
    with pytest.raises(HeadwiseError, match=r"caps.jsonl line 2: expected"):
        load_captions(bad, ann)
    write_jsonl(bad, [{"image_id": 1, "caption": "a dog"}, {"image_id": 99, "caption": "a dog"}])
    with pytest.raises(HeadwiseError, match=r"caps.jsonl line 2: image_id 99 is not in the annotations"):
        load_captions(bad, ann)
    bad.write_text("\n")
    with pytest.raises(HeadwiseError, match="holds no captions"):
        load_captions(bad, ann)


def test_captions_by_file_name_and_json_list(tmp_path):
    coco = write_coco(tmp_path / "coco", {1: ["dog"], 2: ["cat"]})
    caps = tmp_path / "caps.json"
    caps.write_text(json.dumps([{"image_id": "COCO_val2014_000000000001.jpg", "caption": "A dog."},
                                {"image_id": "2", "caption": "A dog."}]))
    r = score_chair_files(caps, coco)
    assert [c["image_id"] for c in r["captions"]] == [1, 2]
    assert r["chair_s"] == 0.5


def test_cli_chair_text_json_and_run_dir(tmp_path):
    coco = write_coco(tmp_path / "coco", {1: ["dog", "frisbee"]})
    caps = write_jsonl(tmp_path / "caps.jsonl", [{"image_id": 1, "caption": "A dog catches a frisbee next to a cat."}])
    runner = CliRunner()
    text = runner.invoke(app, ["chair", "--captions", str(caps), "--annotations", str(coco)])
    assert text.exit_code == 0, text.output
    assert "CHAIR_S 100.0" in text.output and "CHAIR_I 33.3" in text.output
    res = runner.invoke(app, ["chair", "--captions", str(caps), "--annotations", str(coco), "--json",
                              "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.output)
    assert metrics["chair_i"] == pytest.approx(1 / 3) and "captions" not in metrics
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["captions"][0]["hallucinated"] == [["cat", "cat"]]
    assert saved["config"]["drop_incomplete"] is False


def test_cli_chair_help_explains_every_option():
    res = CliRunner().invoke(app, ["chair", "--help"])
    assert res.exit_code == 0
    for option in ("--captions", "--annotations", "--synonyms", "--drop-incomplete", "--out", "--json"):
        assert option in res.output


def test_cli_bad_captions_raise_headwise_error_on_the_bare_app(tmp_path):
    coco = write_coco(tmp_path / "coco", {1: ["dog"]})
    bad = tmp_path / "caps.jsonl"
    bad.write_text("not json\n")
    res = CliRunner().invoke(app, ["chair", "--captions", str(bad), "--annotations", str(coco)])
    assert isinstance(res.exception, HeadwiseError) and "line 1: invalid JSON" in str(res.exception)
    res = CliRunner().invoke(app, ["chair", "--annotations", str(coco)])
    assert isinstance(res.exception, HeadwiseError) and "give --captions" in str(res.exception)


def test_headwise_eval_chair_exits_2_without_traceback(tmp_path):
    coco = write_coco(tmp_path / "coco", {1: ["dog"]})
    caps = write_jsonl(tmp_path / "caps.jsonl", [{"image_id": 42, "caption": "a dog"}])
    proc = subprocess.run([sys.executable, "-m", "headwise.cli", "eval", "chair", "--captions", str(caps),
                           "--annotations", str(coco)], capture_output=True, text=True, timeout=120,
                           check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "line 1: image_id 42 is not in the annotations" in proc.stderr
