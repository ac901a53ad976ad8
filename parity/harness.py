"""The shared half of the parity harness: get a reference, give it a virtual environment, run it, write its golden.

A reference is run where it lies, never copied into headwise: a GitHub repository is exported at a pinned
commit into parity/.refs/ (from a local clone, or cloned when GitHub can be reached), a PyPI package is
installed into the reference's own virtual environment under parity/.venvs/. Both folders are ignored by git.
What comes back is a golden, parity/goldens/NAME.json: the reference, its commit or version, the sha256 of
every input, the adaptations made to run it, and its outputs. The goldens are committed; the tests under
tests/parity/ compare headwise with them offline.

Where a local clone is looked for, in order: $PARITY_REPOS/OWNER+NAME, parity/.refs/OWNER+NAME (each a work
tree or a bare repository holding the commit). A reference that cannot be had ends the script with one
sentence naming it and exit status 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GOLDENS = HERE / "goldens"
INPUTS = HERE / "inputs"
REFS = HERE / ".refs"
VENVS = HERE / ".venvs"


class Unavailable(SystemExit):
    """A reference (repository, package or data) that cannot be had: one sentence on stderr, exit status 2."""

    def __init__(self, sentence: str):
        print(f"parity: {sentence}", file=sys.stderr)
        super().__init__(2)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def inputs_hash(paths: list[Path]) -> dict[str, str]:
    """{path relative to the repo root: sha256}, the record a golden keeps of what it was computed on."""
    return {str(Path(p).resolve().relative_to(ROOT)): sha256(p) for p in paths}


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def _git_dir(folder: Path) -> Path | None:
    for candidate in (folder / ".git", folder / "repo" / ".git", folder / "repo", folder):
        if candidate.is_dir() and _git("--git-dir", str(candidate), "rev-parse", "--git-dir").returncode == 0:
            return candidate
    return None


def repo_at(repo: str, commit: str, paths: list[str]) -> Path:
    """A folder holding `paths` (files or folders) of repository `repo` ("owner/name") at `commit`, exported
    once into parity/.refs/ (only those paths: some references carry model weights the harness never needs).

    Raises:
        Unavailable: no local clone holds the commit and GitHub cannot be reached.
    """
    owner_name = repo.replace("/", "+")
    out = REFS / f"{owner_name}@{commit[:12]}"
    if (out / ".complete").is_file() and (out / ".complete").read_text().split() == [commit, *paths]:
        return out
    roots = [Path(os.environ["PARITY_REPOS"]) / owner_name] if os.environ.get("PARITY_REPOS") else []
    roots.append(REFS / owner_name)
    git_dir = next((g for g in map(_git_dir, roots) if g is not None
                    and _git("--git-dir", str(g), "cat-file", "-e", f"{commit}^{{commit}}").returncode == 0), None)
    if git_dir is None:
        clone = REFS / owner_name
        clone.parent.mkdir(parents=True, exist_ok=True)
        if not clone.exists():
            _git("clone", "--quiet", "--bare", f"https://github.com/{repo}", str(clone))
        git_dir = _git_dir(clone)
        if git_dir is None or _git("--git-dir", str(git_dir), "cat-file", "-e", f"{commit}^{{commit}}").returncode:
            raise Unavailable(f"cannot get the repository {repo} at commit {commit}: clone it into "
                              f"parity/.refs/{owner_name} (or $PARITY_REPOS/{owner_name}) and run again.")
    out.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "--git-dir", str(git_dir), "archive", commit, "--", *paths],
                             capture_output=True, timeout=600)
    if archive.returncode or subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout).returncode:
        raise Unavailable(f"cannot export {', '.join(paths)} of {repo} at commit {commit} "
                          f"({archive.stderr.decode().strip() or 'tar failed'}).")
    (out / ".complete").write_text(" ".join([commit, *paths]))
    return out


def venv(name: str, requirements: list[str], python: str | None = None) -> Path:
    """The python of parity/.venvs/NAME with exactly `requirements` installed (reused while they are unchanged).

    Raises:
        Unavailable: the interpreter or a package cannot be had (the sentence names it).
    """
    folder = VENVS / name
    stamp = folder / ".requirements"
    wanted = "\n".join([python or sys.executable, *requirements])
    py = folder / "bin" / "python"
    if stamp.is_file() and stamp.read_text() == wanted and py.is_file():
        return py
    base = python or sys.executable
    if subprocess.run([base, "-m", "venv", "--clear", str(folder)], capture_output=True).returncode:
        raise Unavailable(f"cannot make a virtual environment with {base} for the reference {name}.")
    for req in requirements:  # one by one, so the failure names its package
        args = req.split() if req.startswith("--") else [req]
        done = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
                              capture_output=True, text=True)
        if done.returncode:
            raise Unavailable(f"cannot install {req!r} from PyPI into the virtual environment of {name} "
                              f"({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'no message'}).")
    stamp.write_text(wanted)
    return py


def run_in(py: Path, runner: str, payload: dict, timeout: int = 1800) -> dict:
    """Run parity/runners/RUNNER.py with `py` (a reference's venv), payload as JSON on stdin, JSON back on stdout."""
    done = subprocess.run([str(py), str(HERE / "runners" / f"{runner}.py")], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"parity: the runner {runner} failed (exit {done.returncode}); its stderr is above.")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_golden(name: str, reference: dict, inputs: list[Path], adaptations: list[str], outputs: dict) -> Path:
    """Write parity/goldens/NAME.json; `reference` holds repo+commit or package+version and the files:lines used."""
    GOLDENS.mkdir(parents=True, exist_ok=True)
    path = GOLDENS / f"{name}.json"
    record = {"name": name, "reference": reference, "inputs": inputs_hash(inputs), "adaptations": adaptations,
              "regenerate": f"make parity (or .venv/bin/python parity/{reference['script']})", "outputs": outputs}
    path.write_text(dumps(record) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def dumps(record) -> str:
    """JSON with one line per list of numbers or strings (a golden of token lists stays readable and short)."""
    flat: list[str] = []

    def mark(value):
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            if all(not isinstance(v, (dict, list)) for v in value):
                flat.append(json.dumps(value))
                return f"\0{len(flat) - 1}\0"
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(record), indent=1)
    return re.sub(r'"\\u0000(\d+)\\u0000"', lambda m: flat[int(m.group(1))], text)


def load_golden(name: str, script: str) -> dict:
    """The golden NAME, checked against the inputs it records; refuses (AssertionError) with how to regenerate.

    A test calls this first, so a missing golden or changed inputs fail loudly instead of passing on stale figures.
    """
    path = GOLDENS / f"{name}.json"
    how = f"regenerate it with `make parity` (or `.venv/bin/python parity/{script}`)"
    if not path.is_file():
        raise AssertionError(f"the golden {path.relative_to(ROOT)} is missing; {how}.")
    golden = json.loads(path.read_text())
    for rel, digest in golden["inputs"].items():
        file = ROOT / rel
        if not file.is_file() or sha256(file) != digest:
            raise AssertionError(f"{rel} no longer has the sha256 the golden {path.name} was computed on; {how}.")
    return golden
