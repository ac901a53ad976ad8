"""Issue 14, section 1: `headwise vhr analyze`, the paper's T-VHD analysis, on a tiny random VLM."""

import json
import subprocess
import sys

import numpy as np
import pytest

from headwise.eval.stats import auroc, spearman
from headwise.runs import Run
from headwise.testing_vlm import save_tiny_vlm, tiny_vlm
from headwise.vhr import generate, token_vhd
from headwise.vhr.analyze import (AnalyzeConfig, analyze, image_set, level_auroc, sentences, token_at, token_starts,
                                  top_share)
from headwise.vhr.inputs import load_image


def test_auroc_counts_ties_half_and_takes_weights():
    assert auroc([3, 4], [1, 2]) == 1.0 and auroc([1], [2]) == 0.0
    assert auroc([1, 2], [2]) == 0.25  # 1 < 2 loses, 2 = 2 ties: (0 + 0.5) / 2
    assert auroc([1, 3], [2], [3, 1]) == 0.25  # the losing score counted three times
    assert auroc([], [1]) is None


def test_spearman_and_top_share():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2], [5, 5, 5]) == 0.0  # constant side
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.9486833)  # scipy.stats.spearmanr's value
    vhd = np.array([[10.0, 0, 0, 0, 0], [0, 0, 0, 0, 10.0]] + [[1.0] * 5] * 2)  # 20 heads: top 5% is one head
    assert top_share(vhd, 0.05) == pytest.approx(10 / 30)


def test_bootstrap_interval_brackets_the_auroc():
    rng = np.random.default_rng(0)
    units = [[{"t_vhd": float(rng.normal(1.0 if bad else 2.0)), "hallucinated": bad, "token": t}
              for t, bad in enumerate((False, False, True))] for _ in range(40)]
    r = level_auroc(units, reps=300, seed=0)
    assert r["ci95"][0] < r["auroc"] < r["ci95"][1] and r["auroc"] > 0.6  # 1 sd apart: 0.76 expected
    assert r["position_auroc"] == 1.0  # the hallucinated mention always comes last: position alone separates them
    assert r["t_vhd_vs_position_spearman"] > 0  # later units score lower here
    assert (r["n_correct"], r["n_hallucinated"], r["bootstrap_resamples"]) == (80, 40, 300)
    assert level_auroc([[{"t_vhd": 1.0, "hallucinated": False}]], reps=10, seed=0)["auroc"] is None


def test_sentences_and_token_positions():
    assert sentences("A dog. Two cats! and a") == [(0, 6), (6, 16), (16, 22)]
    tok = tiny_vlm("llava")[1].tokenizer
    ids = tok("a dog near two cat", add_special_tokens=False)["input_ids"]
    starts = token_starts(tok, ids)
    text = tok.decode(ids)
    assert text == "a dog near two cat" and starts == [0, 1, 5, 10, 14]
    assert token_at(starts, text.index("cat")) == 4 and token_at(starts, text.index("dog")) == 1


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from headwise.testbed.dataset import make

    out = tmp_path_factory.mktemp("scenes")
    make(out, n=4, seed=0, progress=False)
    return out


def test_analysis_on_a_tiny_vlm_writes_everything_and_resumes(scenes, tmp_path):
    model, proc = tiny_vlm("llava")
    cfg = AnalyzeConfig(n=4, k=2, max_new_tokens=12, bootstrap=50)
    chosen = image_set(scenes / "images", scenes / "annotations", cfg.n, cfg.seed)
    run = Run(tmp_path / "run", "vhr analyze", cfg.__dict__)
    result = analyze(model, proc, chosen, cfg, run)
    for name in ("mentions.jsonl", "results.json", "tvhd_hist.png", "vhd_heatmap.png", "captions.jsonl"):
        assert (tmp_path / "run" / name).is_file(), name
    mentions = [json.loads(line) for line in (tmp_path / "run" / "mentions.jsonl").read_text().splitlines()]
    assert mentions and set(mentions[0]) == {"image_id", "word", "category", "hallucinated", "token", "t_vhd"}
    rows = {r["image_id"]: r for r in map(json.loads, (tmp_path / "run" / "captions.jsonl").read_text().splitlines())}
    # check one image against an independent T-VHD pass: the mention's score is its first sub-token's
    m = mentions[0]
    item = next(it for it in chosen.items if it["image_id"] == m["image_id"])
    image = load_image(scenes / "images" / item["file"])
    ids = generate(model, proc, [image], cfg.prompt, method="greedy", max_new_tokens=12).sequences[0]
    assert ids.tolist() == rows[m["image_id"]]["ids"]
    words = proc.tokenizer.convert_ids_to_tokens(ids.tolist())
    tv = token_vhd(model, proc, image, cfg.prompt, ids, k=2)
    assert words[m["token"]] == m["word"].split()[0]
    assert m["t_vhd"] == pytest.approx(tv["t_vhd"][m["token"]], rel=1e-4)
    truth = chosen.truths[m["image_id"]]
    assert m["hallucinated"] == (m["category"] not in truth)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    for key in ("words", "sentences", "top_heads_share", "rank_correlation", "images", "mean_caption_tokens"):
        assert key in saved
    assert saved["words"]["n_correct"] + saved["words"]["n_hallucinated"] == len(mentions)
    assert 0 < saved["top_heads_share"]["mean"] <= 1 and -1 <= saved["rank_correlation"]["with_gray_image"] <= 1
    # resumes: nothing is recomputed, the same numbers come out
    before = (tmp_path / "run" / "captions.rank0.jsonl").read_text()
    again = analyze(model, proc, chosen, cfg, Run(tmp_path / "run", "vhr analyze", cfg.__dict__))
    assert (tmp_path / "run" / "captions.rank0.jsonl").read_text() == before
    assert again["words"] == result["words"]


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "headwise.cli", "vhr", "analyze", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def test_cli_runs_and_refuses_bad_input(scenes, tmp_path):
    model = save_tiny_vlm("llava", tmp_path / "model")
    base = ["--model", model, "--images", scenes / "images", "--annotations", scenes / "annotations", "--n", 2,
            "--max-new-tokens", 6]
    proc = cli(*base, "--k", 2, "--out", tmp_path / "run", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["images"] == 2 and "analysing" in proc.stderr  # progress bar
    for k in (0, 99):  # the tiny model has 4 heads per layer
        bad = cli(*base, "--k", k, "--out", tmp_path / f"k{k}")
        assert bad.returncode == 2 and "--k must be between 1 and" in bad.stderr and "Traceback" not in bad.stderr
        assert not (tmp_path / f"k{k}").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    inst = json.loads((scenes / "annotations" / "instances_testbed.json").read_text())
    (empty / "instances_testbed.json").write_text(json.dumps(inst | {"annotations": []}))
    refused = cli("--model", model, "--images", scenes / "images", "--annotations", empty, "--out", tmp_path / "e")
    assert refused.returncode == 2 and "has an annotated object" in refused.stderr and "Traceback" not in refused.stderr
    assert "first sub-token" in " ".join(cli("--help").stdout.split())
