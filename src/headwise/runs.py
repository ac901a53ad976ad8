"""The run directory every command writes through: config, results.json, artefacts, all atomic."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from headwise.errors import HeadwiseError


def out_dir(out: str | Path) -> Path:
    """An --out directory: refused with one sentence when it names an existing file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HeadwiseError(f"--out {out} is a file; give a directory.")
    return out


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    if path.is_dir():
        raise HeadwiseError(f"{path} is a directory; give a file name to write to.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


class Run:
    """A run directory: `config.yaml` (what was asked), `results.json` (what came out), artefacts.

    Reopening a directory with the same config resumes it; with a different config it is refused,
    so results of different settings are never mixed.
    """

    def __init__(self, out: str | Path | None, command: str, config: dict[str, Any]):
        if out is None:
            out = Path("runs") / command.replace(" ", "-") / time.strftime("%Y%m%d-%H%M%S")
        self.dir = out_dir(out)
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
