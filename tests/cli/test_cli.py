"""The command line: bad input gives one sentence and exit status 2, never a traceback."""

import json
import os
import subprocess
import sys

import pytest


def headwise(*args, env=None):
    return subprocess.run([sys.executable, "-m", "headwise.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def assert_clean_failure(proc, message):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert message in proc.stderr


def test_help_explains_every_option():
    proc = headwise("heads", "scan", "--help")
    assert proc.returncode == 0
    for option in ("--model", "--data", "--out", "--seq-len", "--windows", "--batch-size", "--layers", "--json"):
        assert option in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["heads", "show", "--model", "/does/not/exist"], "does not exist"),
    (["heads", "show", "--model", "/tmp"], "holds no model"),
    (["heads", "scan", "--model", "smollm2", "--layers", "a,b"], "--layers must be"),
    (["assets", "fetch", "--only", "nope"], "unknown asset 'nope'"),
])
def test_bad_input_exits_2_with_one_sentence(args, message):
    assert_clean_failure(headwise(*args), message)


def test_unsupported_family(tmp_path):
    import transformers as tf

    tf.BertForMaskedLM(tf.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                     intermediate_size=32, vocab_size=64)).save_pretrained(tmp_path)
    proc = headwise("heads", "show", "--model", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("model", ["smollm2", "gemma3-270m"])
def test_missing_assets_say_what_to_run(tmp_path, model):
    proc = headwise("heads", "show", "--model", model, env={"HEADWISE_CACHE": str(tmp_path)})
    assert_clean_failure(proc, f"run `headwise assets fetch --only {model}`")


def test_show_json_on_a_saved_tiny_model(tmp_path):
    from headwise.testing import tiny_model

    tiny_model("qwen2").save_pretrained(tmp_path)
    proc = headwise("heads", "show", "--model", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["num_kv_heads"] == 2


def test_layer_out_of_range_in_scan(smollm2, tmp_path):
    proc = headwise("heads", "scan", "--model", "smollm2", "--layers", "30", "--out", str(tmp_path / "r"))
    assert_clean_failure(proc, "layer 30 is out of range")


def test_scan_cli_writes_run_directory(smollm2, tmp_path):
    out = tmp_path / "scan"
    proc = headwise("heads", "scan", "--model", "smollm2", "--layers", "29", "--windows", "1", "--seq-len", "32",
                    "--batch-size", "9", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (out / "results.json").is_file() and (out / "heatmap.png").stat().st_size > 1000
    assert (out / "config.yaml").is_file()
    saved = json.loads((out / "results.json").read_text())
    assert saved["ablated_ppl"][29] == result["ablated_ppl"][29] and saved["env"]["torch"]


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    from headwise.testing_vlm import save_tiny_vlm, test_image

    root = tmp_path_factory.mktemp("llava")
    save_tiny_vlm("llava", root / "model")
    test_image(0, size=(40, 30)).save(root / "img.png")
    return root


def test_vhr_describe_and_heads(tiny_llava, tmp_path):
    proc = headwise("vhr", "describe", "--model", str(tiny_llava / "model"), "--image", str(tiny_llava / "img.png"),
                    "--layers", "0,1", "--max-new-tokens", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["method"] == "vhr" and out["text"]
    # 4 heads per layer: "strictly above the lower median" picks 2 in each reinforced layer (Eq. 7)
    assert set(out["heads"]) == {"0", "1"} and all(len(h) == 2 for h in out["heads"].values())
    plot = tmp_path / "vhd.png"
    proc = headwise("vhr", "heads", "--model", str(tiny_llava / "model"), "--image", str(tiny_llava / "img.png"),
                    "--plot", str(plot), "--json")
    assert proc.returncode == 0, proc.stderr
    heads = json.loads(proc.stdout)
    vhd = heads["vhd"]
    assert plot.stat().st_size > 1000 and len(vhd) == 2 and all(len(row) == 4 for row in vhd)
    ranked = [(r["layer"], r["head"]) for r in heads["top_heads"]]
    assert len(ranked) == 8 and [r["vhd"] for r in heads["top_heads"]] == sorted((v for row in vhd for v in row),
                                                                                   reverse=True)
    assert all(vhd[l][h] == r["vhd"] for (l, h), r in zip(ranked, heads["top_heads"]))
    # Layer 0 is the first reinforced layer, so VHR chose its heads from the same unreinforced VHD `vhr heads`
    # reports: the two largest (no Eq. 6 outlier on this image).
    assert out["heads"]["0"] == sorted(sorted(range(4), key=lambda h: vhd[0][h])[2:])


@pytest.mark.parametrize("extra, message", [
    (["--alpha", "-1"], "alpha must be > 0"),
    (["--layers", "9"], "layer 9 is out of range"),
    (["--method", "dola"], "unknown method"),
])
def test_vhr_bad_options(tiny_llava, extra, message):
    proc = headwise("vhr", "describe", "--model", str(tiny_llava / "model"), "--image", str(tiny_llava / "img.png"),
                    *extra)
    assert_clean_failure(proc, message)


def test_vhr_unreadable_image_and_text_only_model(tiny_llava, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00\x01")
    assert_clean_failure(headwise("vhr", "describe", "--model", str(tiny_llava / "model"), "--image", str(bad)),
                         "could not be read")
    from headwise.testing import tiny_model

    tiny_model("llama").save_pretrained(tmp_path / "lm")
    from headwise.testing_vlm import tiny_vlm

    tiny_vlm("llava")[1].tokenizer.save_pretrained(tmp_path / "lm")
    assert_clean_failure(headwise("vhr", "describe", "--model", str(tmp_path / "lm"), "--image",
                                  str(tiny_llava / "img.png")), "no image token")
