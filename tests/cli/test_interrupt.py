"""Ctrl-C: exit 130 with one line naming where the finished work is and the command that resumes it (issue 16)."""

import re
import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.real
@pytest.mark.parametrize("given_out", [True, False])
def test_ctrl_c_names_the_run_directory_and_the_resume_command(given_out, tmp_path):
    from headwise.assets.registry import is_present

    if not is_present("smollm2"):
        pytest.skip("SmolLM2 is not in the asset cache; run `headwise assets fetch`")
    args = ["heads", "scan", "--model", "smollm2", "--windows", "2", "--seq-len", "128"]
    if given_out:
        args += ["--out", "scan"]
    # as from a terminal: a shell's background job (`pytest &`) would otherwise hand down SIGINT ignored
    proc = subprocess.Popen([sys.executable, "-m", "headwise.cli", *args], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Interrupt once the run directory exists: the model is loaded and the scan (tens of seconds) is under way.
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob("scan/config.yaml")) + list(tmp_path.glob("runs/heads-scan/*/config.yaml")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err + out
    last = err.strip().splitlines()[-1]
    if given_out:
        assert last == ("interrupted; finished work is saved in scan; rerun `headwise heads scan --model smollm2 "
                        "--windows 2 --seq-len 128 --out scan` to resume.")
    else:
        # the default directory is new each time, so resuming needs it named
        found = re.fullmatch(r"interrupted; finished work is saved in (runs/heads-scan/[\d-]+); rerun `headwise heads "
                             r"scan --model smollm2 --windows 2 --seq-len 128 --out (\S+)` to resume\.", last)
        assert found and found[1] == found[2] and (tmp_path / found[1] / "config.yaml").is_file(), last


@pytest.mark.parametrize("command", [["heads", "show"], ["heads", "scan", "--out", "new-run"]])
def test_ctrl_c_before_anything_is_saved(command, monkeypatch, capsys, tmp_path):
    """Interrupted while a model loads (no run directory yet): exit 130 and say that nothing was saved."""
    import headwise.models
    from headwise.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(headwise.models, "load_model", interrupted)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["headwise", *command, "--model", "smollm2"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 130
    assert capsys.readouterr().err == "interrupted before anything was saved.\n"
