"""Launches that would not run as asked are refused before anything is written (headwise.distributed.check_launch).

On a machine without CUDA, Accelerate (1.16) turns `accelerate launch --use_fsdp` into plain DDP over gloo and
ignores `--use_deepspeed`; a script whose Accelerator is not a CPU one even runs each launched process alone.
The real FSDP 2 run over two processes is tests/cl/test_trainer.py::test_two_processes_match_one[fsdp2]."""

import sys

import pytest

from headwise import distributed
from headwise.errors import HeadwiseError


def headwise(monkeypatch, capsys, *args):
    from headwise.cli import main

    monkeypatch.setattr(sys, "argv", ["headwise", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("env, words", [
    ({"ACCELERATE_USE_DEEPSPEED": "true"}, "DeepSpeed was asked for but Accelerate set up NO instead"),
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, "headwise needs FSDP version 2"),
])
def test_a_launch_accelerate_would_change_is_refused_and_writes_nothing(tmp_path, monkeypatch, capsys, env, words):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, err = headwise(monkeypatch, capsys, "cl", "run", "--model", "smollm2", "--out", tmp_path / "r")
    assert code == 2 and words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_processes_that_would_each_train_alone_are_refused(monkeypatch):
    """The fallback the issue found: `accelerate launch --num_processes 2` started two processes, and Accelerate
    gave each distributed type NO and rank 0, so each would have trained its own copy."""
    from accelerate.utils import DistributedType

    alone = type("State", (), {"num_processes": 1, "distributed_type": DistributedType.NO})()
    monkeypatch.setattr(distributed, "process_state", lambda: alone)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    distributed.check_launch()  # WORLD_SIZE alone may be an orchestrator's: not a launch of this script
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(HeadwiseError, match="2 processes were launched but Accelerate runs this one alone"):
        distributed.check_launch()
    monkeypatch.setenv("WORLD_SIZE", "1")
    distributed.check_launch()  # one process, launched as one: fine
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(HeadwiseError, match="WORLD_SIZE must be a whole number"):
        distributed.check_launch()


@pytest.mark.parametrize("args, words", [
    (["--preset", "nope"], "unknown preset 'nope'; choose one of faithful, paper, paper-faithful"),
    (["--preset", "paper", "--effective-batch", "100"], "--effective-batch 100 is not a whole number"),
    (["--grad-accum", "3", "--effective-batch", "32", "--batch-size", "4"], "give the effective batch or the"),
    (["--lr-schedule", "linear"], "--lr-schedule must be one of constant, cosine"),
])
def test_bad_settings_exit_2_and_write_nothing(tmp_path, monkeypatch, capsys, args, words):
    code, err = headwise(monkeypatch, capsys, "cl", "run", "--model", "smollm2", *args, "--out", tmp_path / "r")
    assert code == 2 and words in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()
