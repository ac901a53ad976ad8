"""Output locations: every command that writes refuses an impossible --out in one sentence (exit 2) before any
model loads, and what headwise writes follows the umask (issue 16)."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from headwise.errors import HeadwiseError
from headwise.runs import Run, atomic_write, check_out

# Every command that writes, with the other options it requires; OUT marks where the output location goes.
WRITERS = {
    "testbed make": ["testbed", "make", "--out", "OUT"],
    "testbed train": ["testbed", "train", "--out", "OUT"],
    "testbed evaluate": ["testbed", "evaluate", "--out", "OUT"],
    "eval chair": ["eval", "chair", "--annotations", "ann", "--model", "smollm2", "--images", "img", "--out", "OUT"],
    "eval pope": ["eval", "pope", "--questions", "q.jsonl", "--model", "smollm2", "--images", "img", "--out", "OUT"],
    "heads scan": ["heads", "scan", "--model", "smollm2", "--out", "OUT"],
    "compress fit": ["compress", "fit", "--model", "smollm2", "--out", "OUT"],
    "compress serve": ["compress", "serve", "--stratnet", "smollm2", "--requests", "r.jsonl", "--out", "OUT"],
    "cl run": ["cl", "run", "--model", "smollm2", "--out", "OUT"],
    "cl table": ["cl", "table", "--model", "smollm2", "--out", "OUT"],
    "vhr heads --plot": ["vhr", "heads", "--model", "emoji-llava", "--image", "img.png", "--plot", "OUT"],
    "vhr analyze": ["vhr", "analyze", "--model", "emoji-llava", "--images", "img", "--annotations", "ann", "--out", "OUT"],
    "demo": ["demo", "--out", "OUT"],
}
# /sys refuses mkdir even to root (EPERM, or EROFS where it is mounted read-only); chmod would not stop root.
READ_ONLY = "/sys/headwise-test/run"


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any model load, config read or emoji-llava assembly fails the test."""
    import headwise.models
    import headwise.testbed.model

    def loaded(*args, **kwargs):
        raise AssertionError("a model was loaded before the output location was checked")
    for module, name in [(headwise.models, "load_model"), (headwise.models, "check_model"),
                         (headwise.models, "_config"), (headwise.testbed.model, "fresh"),
                         (headwise.testbed.model, "emoji_llava_dir")]:
        monkeypatch.setattr(module, name, loaded)


def run_main(args, monkeypatch, capsys):
    from headwise.cli import main

    monkeypatch.setattr(sys, "argv", ["headwise", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr()


@pytest.mark.parametrize("command", list(WRITERS))
@pytest.mark.parametrize("fault", ["under a file", "read-only", "an existing file"])
def test_bad_output_location_exits_2_before_any_model_loads(command, fault, tmp_path, monkeypatch, capsys,
                                                             no_model_loads):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a directory")
    if fault == "an existing file" and command == "vhr heads --plot":
        target, message = str(tmp_path), "is a directory; give a file name"  # a --plot file cannot be a folder
    else:
        target, message = {"under a file": (str(tmp_path / "afile" / "run"), "lies under the file"),
                           "read-only": (READ_ONLY, "cannot be written"),
                           "an existing file": (str(tmp_path / "afile"), "is a file; give a directory")}[fault]
    args = [target if a == "OUT" else a for a in WRITERS[command]]
    code, out = run_main(args, monkeypatch, capsys)
    assert code == 2, out.err
    assert out.err.startswith("error: ") and message in out.err and out.err.count("\n") == 1, out.err
    assert target in out.err


def test_impossible_out_through_the_real_command_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "headwise.cli", "heads", "scan", "--model", "smollm2", "--out",
                           str(tmp_path / "afile" / "run")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr == f"error: --out {tmp_path / 'afile' / 'run'} lies under the file {tmp_path / 'afile'}; " \
                          "give a path under a directory.\n"


def test_default_run_directory_is_checked_too(tmp_path, monkeypatch, capsys, no_model_loads):
    """Without --out, heads scan writes under ./runs; a file of that name is refused before the model loads."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("x")
    code, out = run_main(["heads", "scan", "--model", "smollm2"], monkeypatch, capsys)
    assert code == 2 and "is a file" in out.err


def test_run_helper_refuses_the_same_locations(tmp_path):
    (tmp_path / "afile").write_text("x")
    for bad in (tmp_path / "afile", tmp_path / "afile" / "run", READ_ONLY):
        with pytest.raises(HeadwiseError):
            Run(bad, "test", {})
    assert check_out(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists() and os.listdir(tmp_path) == ["afile"]  # the probe leaves nothing


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_follow_the_umask(umask, tmp_path):
    """As open() would: 0666 less the umask (mkstemp made every file 0600 whatever the umask)."""
    from headwise.plots import heatmap

    atomic_write(tmp_path / "a.txt", "x")
    run = Run(tmp_path / "run", "test", {"a": 1})
    run.finish({"b": 2})
    heatmap([[0.0, 1.0]], run.path("plot.png"), "t", "c")
    expected = 0o666 & ~umask
    for path in (tmp_path / "a.txt", run.path("config.yaml"), run.path("results.json"), run.path("plot.png")):
        assert mode(path) == expected, path
    assert mode(run.dir) == 0o777 & ~umask
    assert sorted(os.listdir(run.dir)) == ["config.yaml", "plot.png", "results.json"]  # no temporary left


def test_stratnet_files_follow_the_umask(umask, tmp_path):
    from headwise.compress import stratnet as sn

    sn.save(sn.StratNet(3, 8, 0.9), tmp_path / "net", {"model": "x"})
    for name in os.listdir(tmp_path / "net"):
        assert mode(tmp_path / "net" / name) == 0o666 & ~umask, name


def test_unwritable_asset_cache_is_refused_before_a_download(tmp_path, monkeypatch, capsys):
    import headwise.assets.registry as registry

    monkeypatch.setenv("HEADWISE_CACHE", READ_ONLY)
    monkeypatch.setattr(registry, "_download", lambda *a, **k: pytest.fail("downloaded into a cache it cannot keep"))
    code, out = run_main(["assets", "fetch", "--only", "wiki"], monkeypatch, capsys)
    assert code == 2 and out.err.count("\n") == 1, out.err
    assert out.err.startswith(f"error: HEADWISE_CACHE {READ_ONLY} cannot be written (/sys: ")


def test_unwritable_cache_is_refused_before_emoji_llava_is_assembled(monkeypatch):
    import headwise.testbed.model as tbm

    monkeypatch.setattr(tbm, "cache_dir", lambda: Path(READ_ONLY))
    monkeypatch.setattr(tbm, "require", lambda name: None)
    monkeypatch.setattr(tbm, "fresh", lambda: pytest.fail("SmolLM2 loaded for an assembly it cannot keep"))
    with pytest.raises(HeadwiseError, match="HEADWISE_CACHE /sys/headwise-test/run cannot be written"):
        tbm.emoji_llava_dir()


def test_saved_models_follow_the_umask(umask, tmp_path):
    """transformers' save_pretrained writes model.safetensors 0600; headwise's saves (pruned models, the
    emoji-llava and SmolLM2 cache folders) go through runs.save_pretrained, which gives open()'s modes."""
    from headwise.compress.serve import save_pruned
    from headwise.testing import tiny_model

    save_pruned(tiny_model("llama"), None, tmp_path / "pruned")
    files = list((tmp_path / "pruned").iterdir())
    assert any(f.name == "model.safetensors" for f in files)
    for f in files:
        assert mode(f) == 0o666 & ~umask, f.name
    assert mode(tmp_path / "pruned") == 0o777 & ~umask


def test_results_name_the_commit_the_process_started_with(tmp_path, monkeypatch):
    """A run that finishes after the checkout moved records the commit its code came from (env.git)."""
    import json

    from headwise import runs

    heads = iter(["aaaaaaa", "bbbbbbb"])
    monkeypatch.setattr(runs, "git_head", lambda: next(heads))
    monkeypatch.setattr(runs, "_PROCESS_GIT", [])
    run = Run(tmp_path / "run", "test", {"a": 1})
    assert runs.git_head() == "bbbbbbb"  # the checkout has moved on since the run opened
    run.finish({"x": 1})
    assert json.loads((tmp_path / "run" / "results.json").read_text())["env"]["git"] == "aaaaaaa"
