"""The documentation: the mkdocs site builds with --strict (a broken link, anchor or API reference fails
it), and every pointer from the code, README and docs into documentation lands inside this repository."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # the parent package of a dotted name is missing
        return True


MISSING = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python") if _missing(m)]
needs_mkdocs = pytest.mark.skipif(bool(MISSING), reason=f"mkdocs not installed ({', '.join(MISSING)} missing): "
                                  "pip install -e '.[dev]' installs mkdocs, mkdocs-material and mkdocstrings[python]")


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=config.parent, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


@needs_mkdocs
def test_site_builds_strictly_with_the_api_reference(tmp_path):
    proc = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("scale_heads", "attention_maps", "load_model", "CLConfig", "FitConfig"):
        assert name in api, f"{name} is missing from the API reference"
    assert (tmp_path / "site" / "seekr" / "index.html").is_file()


@needs_mkdocs
def test_a_broken_anchor_fails_the_build(tmp_path):
    # The same site with one link to a section that does not exist: --strict must refuse it.
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").replace("paths: [src]", f"paths: [{ROOT / 'src'}]")
    (tmp_path / "mkdocs.yml").write_text(config, encoding="utf-8")
    with open(tmp_path / "docs" / "index.md", "a", encoding="utf-8") as f:
        f.write("\nSee [nowhere](seekr.md#no-such-section).\n")
    proc = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode != 0 and "no-such-section" in proc.stderr


def slug(heading: str) -> str:
    """mkdocs' (Python-Markdown toc) default slug of a heading."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[-\s]+", "-", text).strip("-")


def anchors(md: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", md.read_text(encoding="utf-8"), re.M)}


def texts():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "src").rglob("*.py")),
             *sorted((ROOT / "src").rglob("README.md"))]
    return [(f, f.read_text(encoding="utf-8")) for f in files]


def test_no_pointer_to_design_documents_outside_the_repository():
    # The design specs the methods were built from are not part of the repository; docs/ replaces them.
    bad = [f"{f.relative_to(ROOT)}: {m.group(0)!r}" for f, text in texts()
           for m in re.finditer(r"design (?:doc|note|spec)s?\b[^\n]{0,20}|§\s*\d+", text, re.I)]
    assert not bad, "pointers to documents outside the repository:\n" + "\n".join(bad)


def test_every_docs_pointer_in_code_and_readme_exists():
    # `docs/x.md#section` in help texts, docstrings and READMEs: the file exists and has that section.
    found = 0
    for f, text in texts():
        for m in re.finditer(r"docs/([\w-]+\.md)(?:#([\w-]+))?", text):
            found += 1
            target = ROOT / "docs" / m.group(1)
            assert target.is_file(), f"{f.relative_to(ROOT)} points at missing {m.group(0)}"
            if m.group(2):
                assert m.group(2) in anchors(target), f"{f.relative_to(ROOT)}: no section #{m.group(2)} in {target.name}"
    assert found >= 5


def test_faithful_help_points_at_the_faithful_mode_section():
    from typer.testing import CliRunner

    from headwise.cli import app

    out = CliRunner().invoke(app, ["cl", "run", "--help"]).output
    flat = re.sub(r"[\s│]", "", out)  # rich wraps the help text inside a box
    assert "(docs/seekr.md#faithful-mode)" in flat
    assert "faithful-mode" in anchors(ROOT / "docs" / "seekr.md")


def documented_commands():
    """(file, subcommand words, flags) for every `headwise ...` line in a code block of the README and docs/."""
    for f in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = f.read_text(encoding="utf-8")
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("#")[0].strip()
                if not line.startswith("headwise "):
                    continue
                words = line.split()
                sub = [w for w in words[1:3] if re.fullmatch(r"[a-z]+", w)]
                if len(sub) == 2:
                    yield f, sub, set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line))


def test_documented_commands_and_options_exist():
    # A guide that names an option the command does not have sends the user to an error.
    from typer.testing import CliRunner

    from headwise.cli import app

    runner, helps, checked = CliRunner(), {}, 0
    for f, sub, flags in documented_commands():
        key = tuple(sub)
        if key not in helps:
            result = runner.invoke(app, [*sub, "--help"], env={"COLUMNS": "250"})
            assert result.exit_code == 0, f"{f.name}: `headwise {' '.join(sub)}` is not a command"
            helps[key] = result.output
        unknown = sorted(flag for flag in flags if flag not in helps[key])
        assert not unknown, f"{f.name}: `headwise {' '.join(sub)}` has no option {', '.join(unknown)}"
        checked += 1
    assert checked >= 20
