"""The wheel: it holds every module and the shipped weights, StratNets and data, declares what headwise needs at
run time, and works installed away from the source tree (issue 16). Built from a copy, so the tree stays clean."""

import email
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "headwise"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    tree = tmp_path_factory.mktemp("tree")
    shutil.copy(REPO / "pyproject.toml", tree)
    shutil.copy(REPO / "README.md", tree)
    shutil.copytree(REPO / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "--disable-pip-version-check", "-w", str(dist), str(tree)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (path,) = dist.glob("headwise-*.whl")
    return path


def shipped_files():
    """What the package must carry: every module and data file in src/headwise (READMEs are for developers)."""
    return {p.relative_to(PACKAGE.parent).as_posix(): p for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".md")}


def test_wheel_holds_the_modules_weights_and_stratnets(wheel):
    expected = shipped_files()
    assert "headwise/testbed/shipped/emoji_llava.safetensors" in expected
    assert "headwise/compress/shipped/smollm2-unstructured/stratnet.safetensors" in expected
    assert "headwise/compress/shipped/gemma3-270m-unstructured/stratnet.safetensors" in expected
    with zipfile.ZipFile(wheel) as zf:
        held = {n for n in zf.namelist() if n.startswith("headwise/")}
        assert set(expected) <= held, sorted(set(expected) - held)
        for name, path in expected.items():
            assert sha(zf.read(name)) == sha(path.read_bytes()), name


def test_wheel_metadata(wheel):
    import headwise

    with zipfile.ZipFile(wheel) as zf:
        info = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(zf.read(info))
        entry_points = zf.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert meta["Name"] == "headwise" and meta["Version"] == headwise.__version__
    core = {r.split(";")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower()
            for r in meta.get_all("Requires-Dist") if "extra ==" not in r}
    # peft is needed at run time (cl run --lora, testbed train, emoji-llava's adapter), so it is no extra
    assert {"torch", "transformers", "safetensors", "peft", "typer", "accelerate", "gpytorch"} <= core
    assert "headwise = headwise.cli:main" in entry_points


def test_installed_wheel_finds_its_shipped_files(wheel, tmp_path):
    """Installed (unpacked) away from the source tree, headwise finds the shipped StratNet by name and the
    emoji-llava weights, and its command line answers."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = ("import headwise, pathlib; from headwise.compress.serve import Server; "
            "from headwise.testbed.model import shipped_weights; "
            "assert pathlib.Path(headwise.__file__).is_relative_to(pathlib.Path(r'%s')), headwise.__file__; "
            "assert Server('smollm2').meta['model'] == 'smollm2'; assert shipped_weights().is_file(); print('ok')"
            % site)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    proc = subprocess.run([sys.executable, "-m", "headwise.cli", "--help"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 0 and "compress" in proc.stdout
