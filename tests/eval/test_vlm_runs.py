"""CHAIR and POPE with a (tiny, random) model in the loop, through the CLI, single- and multi-process."""

import json
import os
import subprocess
import sys

import pytest

from headwise.testing_vlm import save_tiny_vlm, test_image

CATEGORIES = [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 3, "name": "car"}]


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    images = root / "images"
    images.mkdir()
    files = []
    for i in range(5):
        name = f"COCO_val2014_{i:012d}.png"
        test_image(i, size=(32, 32)).save(images / name)
        files.append({"id": i, "file_name": name})
    (images / "COCO_val2014_000000000004.png").write_bytes(b"not a png")  # fails, must be recorded
    ann = root / "annotations"
    ann.mkdir()
    (ann / "instances_val2014.json").write_text(json.dumps({
        "images": files, "categories": CATEGORIES,
        "annotations": [{"id": i, "image_id": i, "category_id": 1 + i % 3} for i in range(5)]}))
    (ann / "captions_val2014.json").write_text(json.dumps({
        "images": files, "annotations": [{"id": i, "image_id": i, "caption": "a photo"} for i in range(5)]}))
    questions = root / "pope.jsonl"
    questions.write_text("".join(json.dumps({"question_id": q, "image": f["file_name"], "text": "is there a dog ?",
                                             "label": "yes" if q % 2 else "no"}) + "\n"
                                 for q, f in enumerate(files[:4])))
    model = root / "model"
    save_tiny_vlm("llava", model)
    return {"images": images, "annotations": ann, "questions": questions, "model": model}


def run(*args, launcher=None):
    cmd = (launcher or [sys.executable, "-m"]) + ["headwise.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def chair_args(coco, out, method="greedy"):
    return ["eval", "chair", "--model", coco["model"], "--images", coco["images"], "--annotations",
            coco["annotations"], "--n", 5, "--seed", 1, "--method", method, "--max-new-tokens", 6, "--out", out,
            "--json"]


def test_chair_run_records_failures_and_resumes(coco, tmp_path):
    out = tmp_path / "chair"
    proc = run(*chair_args(coco, out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["n"] == 4 and summary["failures"] == 1
    results = json.loads((out / "results.json").read_text())
    assert "cannot identify image" in results["failures"][0]["error"] or "could not be read" in results["failures"][0]["error"]
    ids = json.loads((out / "image_ids.json").read_text())
    assert len(ids) == 5
    captions = [json.loads(l) for l in (out / "captions.jsonl").read_text().splitlines()]
    assert len(captions) == 5
    again = run(*chair_args(coco, out))  # resumes: nothing left to caption, same metrics
    assert again.returncode == 0 and json.loads(again.stdout)["chair_i"] == summary["chair_i"]
    assert [json.loads(l) for l in (out / "captions.jsonl").read_text().splitlines()] == captions

    # The state a kill after two captions leaves: two finished lines and one cut short in the shard, no merged file,
    # no results. The two finished captions are replaced by ones the model would not write: a resumed run must
    # keep them (not caption those images again) and score them.
    ok = [c for c in captions if "text" in c]
    planted = [dict(ok[0], text="a dog and a cat ."), dict(ok[1], text="a car .")]
    (out / "captions.rank0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in planted) + '{"image_id": ')
    for name in ("captions.jsonl", "results.json", "chair_details.json"):
        (out / name).unlink()
    resumed = run(*chair_args(coco, out))
    assert resumed.returncode == 0, resumed.stderr
    rows = {r["image_id"]: r for r in map(json.loads, (out / "captions.jsonl").read_text().splitlines())}
    assert [rows[p["image_id"]]["text"] for p in planted] == ["a dog and a cat .", "a car ."]
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert all(strip(rows[c["image_id"]]) == strip(c) for c in captions if c not in ok[:2])  # recomputed the same
    details = {d["image_id"]: d for d in json.loads((out / "chair_details.json").read_text())}
    assert details[planted[1]["image_id"]]["objects"] == [["car", "car"]]  # the planted caption was scored


def test_same_images_for_every_method(coco, tmp_path):
    greedy, vhr = tmp_path / "g", tmp_path / "v"
    assert run(*chair_args(coco, greedy)).returncode == 0
    proc = run(*chair_args(coco, vhr, method="vhr"))
    assert proc.returncode == 0, proc.stderr
    assert (greedy / "image_ids.json").read_text() == (vhr / "image_ids.json").read_text()


def test_pope_run(coco, tmp_path):
    proc = run("eval", "pope", "--model", coco["model"], "--images", coco["images"], "--questions",
               coco["questions"], "--method", "vhr", "--out", tmp_path / "pope", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    answers = [json.loads(l) for l in (tmp_path / "pope" / "answers.jsonl").read_text().splitlines()]
    assert result["n"] == 4 and [a["key"] for a in answers] == ["0", "1", "2", "3"]
    labels = ["no", "yes", "no", "yes"]  # question q has label yes when q is odd

    def by_hand(texts):  # LLaVA's rule: "no" when a word of the first sentence is no/not/...n't
        said = ["no" if any(w.strip("\"'!?;:").lower() in ("no", "not") or w.endswith("n't")
                            for w in t.split(".")[0].replace(",", "").split()) else "yes" for t in texts]
        tp = sum(s == l == "yes" for s, l in zip(said, labels))
        fp = sum(s == "yes" != l for s, l in zip(said, labels))
        fn = sum(s == "no" != l for s, l in zip(said, labels))
        return {"accuracy": sum(s == l for s, l in zip(said, labels)) / 4,
                "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0, "yes_ratio": said.count("yes") / 4}

    assert {k: result[k] for k in ("accuracy", "f1", "yes_ratio")} == pytest.approx(by_hand(a["text"] for a in answers))

    # Stopped after two answers (two lines and half a line in the shard): the resumed run keeps those two answers,
    # answers the other two, and scores all four.
    planted = [dict(answers[0], text="No, there is not."), dict(answers[1], text="Yes.")]
    out = tmp_path / "pope"
    (out / "answers.rank0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in planted) + '{"key": "2", "te')
    for name in ("answers.jsonl", "results.json"):
        (out / name).unlink()
    resumed = run("eval", "pope", "--model", coco["model"], "--images", coco["images"], "--questions",
                  coco["questions"], "--method", "vhr", "--out", out, "--json")
    assert resumed.returncode == 0, resumed.stderr
    again = [json.loads(l) for l in (out / "answers.jsonl").read_text().splitlines()]
    assert [a["text"] for a in again] == ["No, there is not.", "Yes.", answers[2]["text"], answers[3]["text"]]
    result = json.loads(resumed.stdout)
    assert {k: result[k] for k in ("accuracy", "f1", "yes_ratio")} == pytest.approx(by_hand(a["text"] for a in again))


def test_two_processes_match_one(coco, tmp_path):
    single, double = tmp_path / "one", tmp_path / "two"
    assert run(*chair_args(coco, single)).returncode == 0
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m"]
    proc = run(*chair_args(coco, double), launcher=launcher)
    assert proc.returncode == 0, proc.stderr
    assert (double / "captions.rank1.jsonl").is_file()
    one = [json.loads(l) for l in (single / "captions.jsonl").read_text().splitlines()]
    two = [json.loads(l) for l in (double / "captions.jsonl").read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(one) == strip(two)
    assert json.loads((single / "results.json").read_text())["metrics"] == \
        json.loads((double / "results.json").read_text())["metrics"]


@pytest.mark.parametrize("extra, message", [
    (["--alpha", "0"], "alpha must be > 0"),
    (["--method", "opera"], "unknown method"),
])
def test_bad_decode_options(coco, tmp_path, extra, message):
    proc = run(*chair_args(coco, tmp_path / "bad"), *extra)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
