"""The harness's refusals: a reference that cannot be had exits 2 with one sentence naming it; a missing golden or
one computed on other inputs fails its tests with how to regenerate it."""

import pytest

from parity import harness


def test_unavailable_repository_exits_2_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(harness, "REFS", tmp_path)
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "file")  # the clone fails at once instead of reaching for GitHub
    monkeypatch.delenv("PARITY_REPOS", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        harness.repo_at("someone/missing", "0" * 40, ["x.py"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "someone/missing" in err and err.count("\n") == 0


def test_unavailable_package_exits_2_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(harness, "VENVS", tmp_path)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(SystemExit) as exit_info:
        harness.venv("nothing", ["no-such-package-for-parity==0.0.1"])
    assert exit_info.value.code == 2
    assert "no-such-package-for-parity" in capsys.readouterr().err


def test_missing_or_stale_golden_fails_with_how_to_regenerate(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "GOLDENS", tmp_path)
    monkeypatch.setattr(harness, "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="missing; regenerate it with `make parity`"):
        harness.load_golden("absent", "absent.py")
    data = tmp_path / "input.txt"
    data.write_text("one")
    harness.write_golden("g", {"repo": "a/b", "commit": "c", "script": "g.py"}, [data], [], {"x": 1})
    assert harness.load_golden("g", "g.py")["outputs"] == {"x": 1}
    data.write_text("two")
    with pytest.raises(AssertionError, match="no longer has the sha256.*regenerate"):
        harness.load_golden("g", "g.py")
