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
    captions = (out / "captions.jsonl").read_text().splitlines()
    assert len(captions) == 5
    again = run(*chair_args(coco, out))  # resumes: nothing left to caption, same metrics
    assert again.returncode == 0 and json.loads(again.stdout)["chair_i"] == summary["chair_i"]
    assert (out / "captions.jsonl").read_text().splitlines() == captions


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
    assert result["n"] == 4 and 0 <= result["f1"] <= 1


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
