"""The run directory every command writes through: config, results.json, artefacts, all atomic."""

from __future__ import annotations

import json
import os
import platform
import secrets
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from headwise.errors import HeadwiseError


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file.

    The file gets the mode open() would give it (0666 less the umask): mkstemp's 0600 would survive the rename.
    """
    path = Path(path)
    if path.is_dir():
        raise HeadwiseError(f"{path} is a directory; give a file name to write to.")
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_jsonl(path: Path) -> list[dict]:
    """The whole lines of a JSON-lines file; a last line cut short by a kill is left out (it will be redone)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def umask() -> int:
    """The process's umask (there is no getter: set it and put it back)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def save_pretrained(directory: str | Path, *objects: Any) -> Path:
    """`obj.save_pretrained(directory)` for a model and its tokenizer or processor, with the modes open() gives.

    transformers writes model.safetensors 0600 whatever the umask; headwise's files follow the umask.
    """
    directory = Path(directory)
    for obj in objects:
        obj.save_pretrained(str(directory))
    mask = umask()
    for path in [directory, *directory.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
    return directory


def check_out(path: str | Path, option: str = "--out", file: bool = False) -> Path:
    """Refuse, in one sentence, an output location that cannot be written, before any work is done for it.

    `path` is a directory to create or reuse (a file to write when `file`). The test is a real one: a probe
    directory is made and removed in the deepest folder that exists, so read-only filesystems, /proc and
    permissions fail here as they would later, also for root, whom access() lets through.
    """
    path = Path(path).expanduser()
    if path.is_dir() and file:
        raise HeadwiseError(f"{option} {path} is a directory; give a file name.")
    if path.exists() and not path.is_dir() and not file:
        raise HeadwiseError(f"{option} {path} is a file; give a directory.")
    existing = path if path.is_dir() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise HeadwiseError(f"{option} {path} lies under the file {existing}; give a path under a directory.")
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".headwise-probe-"))
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise HeadwiseError(f"{option} {path} cannot be written ({existing}: {reason}); choose a writable location.") from err
    return path


def environment() -> dict[str, Any]:
    import torch
    import transformers

    from headwise import __version__

    env = {"headwise": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "platform": platform.platform(),
           "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "threads": torch.get_num_threads()}
    try:
        root = Path(__file__).resolve().parent
        env["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                    text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        env["git"] = None
    return env


# The runs this process opened, first first: the CLI's Ctrl-C message names where work was saved.
OPENED: list[Run] = []


class Run:
    """A run directory: `config.yaml` (what was asked), `results.json` (what came out), artefacts.

    Reopening a directory with the same config resumes it; with a different config it is refused,
    so results of different settings are never mixed.
    """

    def __init__(self, out: str | Path | None, command: str, config: dict[str, Any]):
        self.defaulted = out is None  # a fresh time-stamped directory: resuming needs --out
        if out is None:
            out = Path("runs") / command.replace(" ", "-") / time.strftime("%Y%m%d-%H%M%S")
        self.dir = check_out(out)
        self.command = command
        self.config = config
        saved = self.dir / "config.yaml"
        if saved.is_file():
            previous = yaml.safe_load(saved.read_text()) or {}
            if previous.get("command") != command or previous.get("config") != _plain(config):
                raise HeadwiseError(
                    f"{self.dir} holds a run with different settings; choose a new --out or delete that directory."
                )
            self.resumed = True
        else:
            self.resumed = False
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write(saved, yaml.safe_dump({"command": command, "config": _plain(config)}, sort_keys=False))
        OPENED.append(self)

    def path(self, name: str) -> Path:
        return self.dir / name

    def read_json(self, name: str) -> Any | None:
        p = self.path(name)
        return json.loads(p.read_text()) if p.is_file() else None

    def write_json(self, name: str, obj: Any) -> Path:
        p = self.path(name)
        atomic_write(p, json.dumps(obj, indent=2, default=_json_default) + "\n")
        return p

    def finish(self, results: dict[str, Any]) -> Path:
        """Write results.json with the command, config and environment beside the results."""
        return self.write_json("results.json", {"command": self.command, "config": _plain(self.config),
                                                "env": environment(), **results})


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")
