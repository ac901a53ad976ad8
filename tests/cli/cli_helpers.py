"""Helpers shared by the CLI tests (a module of its own name, not conftest: see tests/cl/cl_helpers.py)."""

import sys


def headwise(monkeypatch, capsys, *args):
    """(exit status, stdout, stderr) of `headwise ARGS`, run in-process through the CLI's own `main` (an exception
    that escaped it would fail the test), which saves an interpreter start per case."""
    from headwise.cli import main

    monkeypatch.setattr(sys, "argv", ["headwise", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exit_info:
        code = exit_info.code
    out = capsys.readouterr()
    return code, out.out, out.err
