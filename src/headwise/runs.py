"""The run directory every command writes through: config, results.json, artefacts, all atomic."""

from __future__ import annotations

import json
import os
import platform
import secrets
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from headwise.errors import HeadwiseError


def atomic_write(path: Path, data: str | bytes | Callable[[Path], Any]) -> None:
    """Write `path` so that readers and a kill at any moment see either the old file or the whole new one.

    `data` is the content, or a function that writes it to the path it is given (torch.save, save_file).
    It goes to a temporary file beside `path`, is flushed to disk, then renamed over `path`; a failure
    removes the temporary file. The file gets the mode open() would give it (0666 less the umask): mkstemp's
    0600 would survive the rename.
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
            if callable(data):
                f.close()
                data(tmp)
                os.chmod(tmp, 0o666 & ~umask())  # writers that make their own file (safetensors) give it 0600
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # on disk before the rename: a crash cannot leave an empty file behind the name
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_jsonl(path: Path) -> list[dict]:
    """The whole lines of a JSON-lines file; a last line cut short by a kill is left out (it will be redone)."""
    path = Path(path)
    return jsonl_rows(path.read_text(encoding="utf-8")) if path.is_file() else []


def jsonl_rows(text: str) -> list[dict]:
    """The whole lines of JSON-lines text, up to a last line cut short (left out)."""
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


class JsonlLog:
    """A JSON-lines file that grows one line per finished item and survives a kill at any moment.

    Opening it reads the whole lines (a half-written last line is dropped) and, where something was
    dropped or `keep` leaves lines out, rewrites the file atomically to exactly those lines, so appending
    never continues a broken line. Each `append` is flushed at once.
    """

    def __init__(self, path: Path, keep: Callable[[dict], bool] | None = None):
        self.path = Path(path)
        raw = self.path.read_text(encoding="utf-8") if self.path.is_file() else ""
        self.rows = [r for r in read_jsonl(self.path) if keep is None or keep(r)]
        clean = "".join(json.dumps(r) + "\n" for r in self.rows)
        if clean != raw or not self.path.is_file():
            atomic_write(self.path, clean)

    def append(self, row: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        self.rows.append(row)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """The whole file at once, atomically."""
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))


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


def git_head() -> str | None:
    """The short commit checked out where headwise is imported from (None outside a git checkout)."""
    try:
        root = Path(__file__).resolve().parent
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


# Filled once, when the process opens its first run: a long run may finish after the checkout has moved on,
# and the commit checked out by then is not the code that computed its results.
_PROCESS_GIT: list[str | None] = []


def process_commit() -> str | None:
    """The commit of the code this process runs (`env.git` in results.json)."""
    if not _PROCESS_GIT:
        _PROCESS_GIT.append(git_head())
    return _PROCESS_GIT[0]


def environment() -> dict[str, Any]:
    import torch
    import transformers

    from headwise import __version__

    return {"headwise": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "threads": torch.get_num_threads(), "git": process_commit()}


# The runs this process opened, first first: the CLI's Ctrl-C message names where work was saved.
OPENED: list[Run] = []


class Run:
    """A run directory: `config.yaml` (what was asked), `results.json` (what came out), artefacts.

    Args:
        out: the directory (None: a new one under runs/<command>/<time>).
        command: the command's name, e.g. "cl run".
        config: the settings that decide what the run computes: plain values and `Settings` objects,
            nested as they are recorded.
        *parts: `Settings` recorded flat beside `config`'s keys (a command whose record was always flat).
        preset: the name of the preset the settings came from, recorded beside them (not compared: the
            resolved settings are what the run computed).
        defaults: for plain keys of `config` added after runs were recorded, the value an older record means.

    Reopening a directory with the same settings resumes it; with different ones it is refused, so results
    of different settings are never mixed. "The same" is one rule (`same_settings`): the older record is
    read back through the current config classes, so a field it lacks takes its current default.
    """

    def __init__(self, out: str | Path | None, command: str, config: dict[str, Any], *parts: Any,
                 preset: str | None = None, defaults: dict[str, Any] | None = None):
        self.defaulted = out is None  # a fresh time-stamped directory: resuming needs --out
        if out is None:
            out = Path("runs") / command.replace(" ", "-") / time.strftime("%Y%m%d-%H%M%S")
        self.dir = check_out(out)
        process_commit()  # before any work, so results.json names the code that computed them
        self.command = command
        self.preset = preset
        self.config = record(config, *parts)
        saved = self.dir / "config.yaml"
        if saved.is_file():
            previous = yaml.safe_load(saved.read_text()) or {}
            if previous.get("command") != command or not same_settings(previous.get("config"), config, *parts,
                                                                        defaults=defaults):
                raise HeadwiseError(
                    f"{self.dir} holds a run with different settings; choose a new --out or delete that directory."
                )
            self.resumed = True
        else:
            self.resumed = False
            self.dir.mkdir(parents=True, exist_ok=True)
            head = {"command": command} | ({"preset": preset} if preset is not None else {})
            atomic_write(saved, yaml.safe_dump({**head, "config": self.config}, sort_keys=False))
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
        """Write results.json with the command, preset, config and environment beside the results."""
        head = {"command": self.command} | ({"preset": self.preset} if self.preset is not None else {})
        return self.write_json("results.json", {**head, "config": self.config, "env": environment(), **results})


def record(config: dict[str, Any], *parts: Any) -> dict[str, Any]:
    """The plain record of a run's settings: `config` with its `Settings` as dicts, and `parts` merged in flat."""
    from headwise.config import plain

    out = _plain(plain(config))
    for part in parts:
        out.update(_plain(part.to_dict()))
    return out


def same_settings(previous: Any, config: dict[str, Any], *parts: Any, defaults: dict[str, Any] | None = None) -> bool:
    """Whether a recorded config (what config.yaml or results.json holds) asks for what `config` and `parts` ask.

    The one rule: the record is read back through the current settings, so every `Settings` field it lacks
    takes its current default (and `Settings.upgrade` renames what an older release called otherwise); a plain
    key it lacks matches only the value `defaults` gives it. Anything else must be equal.
    """
    if not isinstance(previous, dict):
        return False
    rest = dict(previous)
    for part in parts:
        cls = type(part)
        upgraded = cls.upgrade(rest)
        mine = set(cls.field_names())
        if not _same_settings_object(cls, {k: v for k, v in upgraded.items() if k in mine}, part):
            return False
        rest = {k: v for k, v in upgraded.items() if k not in mine}
    return _same(rest, config, defaults or {})


def _same_settings_object(cls, previous: Any, current: Any) -> bool:
    try:
        return cls.from_dict(previous) == current
    except (HeadwiseError, TypeError, ValueError):
        return False


def _same(previous: Any, current: Any, defaults: Any) -> bool:
    from headwise.config import Settings

    if isinstance(current, Settings):
        return _same_settings_object(type(current), previous, current)
    if isinstance(current, dict):
        if not isinstance(previous, dict) or set(previous) - set(current):
            return False
        defaults = defaults if isinstance(defaults, dict) else {}
        for key, value in current.items():
            if key in previous:
                if not _same(previous[key], value, defaults.get(key)):
                    return False
            elif isinstance(value, Settings):
                if not _same_settings_object(type(value), {}, value):
                    return False
            elif key not in defaults or _plain(defaults[key]) != _plain(value):
                return False
        return True
    return _plain(previous) == _plain(current)


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")
