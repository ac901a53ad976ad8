"""Bad input to `headwise demo`, `testbed make`, `testbed evaluate`, `vhr heads` and `assets list`: one sentence
on stderr and exit status 2, never a traceback, and (where it matters) before any slow work starts. Run in-process
through the CLI's own `main` (an exception that escaped it would fail the test), which saves an interpreter start
per case; tests/cli/test_cli.py covers the same path in subprocesses."""

import json

import pytest
import torch

from cli_helpers import headwise


def assert_clean_failure(result, message):
    code, out, err = result
    assert code == 2, err
    assert "Traceback" not in out + err and message in err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from headwise.testing_vlm import save_tiny_vlm, test_image

    d = tmp_path_factory.mktemp("bad")
    (d / "a_file").write_text("not a directory, not an image")
    test_image(0, size=(32, 32)).save(d / "img.png")
    save_tiny_vlm("llava", d / "vlm")
    (d / "a_dir").mkdir()
    return d


CASES = [
    (["demo", "--windows", "0"], "--windows must be at least 1"),
    (["demo", "--seq-len", "1"], "--seq-len at least 2"),
    (["demo", "--out", "{d}/a_file"], "is a file; give a directory"),
    (["testbed", "make", "--out", "{d}/m", "--n", "0"], "--n must be at least 1"),
    (["testbed", "make", "--out", "{d}/m", "--size", "8"], "--size must be at least 32"),
    (["testbed", "make", "--out", "{d}/a_file", "--n", "2"], "is a file; give a directory"),
    (["testbed", "evaluate", "--out", "{d}/e", "--methods", "greedy,opera"], "unknown method 'opera'"),
    (["testbed", "evaluate", "--out", "{d}/e", "--splits", "easy"], "unknown POPE split 'easy'"),
    (["testbed", "evaluate", "--out", "{d}/e", "--alpha", "0"], "alpha must be > 0"),
    (["testbed", "evaluate", "--out", "{d}/e", "--seeds", "a,b"], "--seeds must be"),
    (["testbed", "evaluate", "--out", "{d}/e", "--n", "0"], "must be at least 1"),
    (["testbed", "evaluate", "--out", "{d}/a_file", "--n", "1"], "is a file; give a directory"),
    (["testbed", "evaluate", "--out", "{d}/e", "--model", "/does/not/exist", "--n", "1", "--seeds", "0",
      "--methods", "greedy", "--splits", "random"], "/does/not/exist does not exist"),
    (["vhr", "heads", "--model", "{d}/vlm", "--image", "{d}/missing.png"], "does not exist"),
    (["vhr", "heads", "--model", "{d}/vlm", "--image", "{d}/a_file"], "could not be read"),
    (["vhr", "heads", "--model", "{d}/vlm", "--image", "{d}/img.png", "--top", "0"], "--top must be at least 1"),
    (["vhr", "heads", "--model", "{d}/vlm", "--image", "{d}/img.png", "--plot", "{d}/a_dir"], "is a directory"),
    (["vhr", "heads", "--model", "{d}/vlm", "--image", "{d}/img.png", "--dtype", "float8"], "unknown dtype"),
    (["assets", "list", "--bogus"], "No such option"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a[:2]) + f" {i}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_is_one_sentence_and_exit_2(files, args, message, monkeypatch, capsys):
    assert_clean_failure(headwise(monkeypatch, capsys, *[a.format(d=files) for a in args]), message)
    assert not (files / "e").exists() and not (files / "m").exists()  # refused before writing anything


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_sentence(files, monkeypatch, capsys):
    result = headwise(monkeypatch, capsys, "vhr", "heads", "--model", files / "vlm", "--image", files / "img.png",
                      "--device", "cuda")
    assert_clean_failure(result, "needs CUDA")


def test_assets_list_reports_an_empty_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HEADWISE_CACHE", str(tmp_path))
    code, out, err = headwise(monkeypatch, capsys, "assets", "list", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["smollm2", "gemma3-270m", "wiki", "openmoji"]
    assert not any(r["present"] for r in rows) and all(r["path"].startswith(str(tmp_path)) for r in rows)
