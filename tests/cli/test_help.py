"""Every --help shows every help text whole: rich markup must not eat a `[...]` written in it (issue 16)."""

import re

import pytest
import typer
from typer.testing import CliRunner

from headwise.cli import app

BOX = re.compile(r"[\u2500-\u257f]")  # the box-drawing characters of rich's panels


def commands(group, path=()):
    """(command path, click command) for the app, its groups and every command under them."""
    yield path, group
    for name, sub in getattr(group, "commands", {}).items():
        yield from commands(sub, (*path, name))


def flat(text):
    return " ".join(BOX.sub(" ", text).split())


def written(help_text):
    """What the user should read: the help as written, with rich's escape `\\[` shown as `[`."""
    return flat(help_text.replace("\\[", "["))


CLICK_APP = typer.main.get_command(app)
ALL = [(" ".join(path) or "headwise", cmd) for path, cmd in commands(CLICK_APP)]


@pytest.mark.parametrize("name, command", ALL, ids=[name for name, _ in ALL])
def test_help_shows_every_help_text_whole(name, command):
    args = name.split()[0:] if name != "headwise" else []
    # wide enough that rich never wraps a help text across lines
    res = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "2000", "TERMINAL_WIDTH": "2000"})
    assert res.exit_code == 0, res.output
    shown = flat(res.output)
    texts = [command.help or ""] + [p.help for p in command.params if getattr(p, "help", None)]
    texts += [sub.help or "" for sub in getattr(command, "commands", {}).values()] if name == "headwise" else []
    for text in filter(None, texts):
        # typer shows a command's docstring up to a form feed, and a group lists each command's first line only
        assert written(text.split("\f")[0]) in shown, f"{name}: help text lost or mangled: {text!r}"


def test_the_request_format_survives_in_compress_serve_help():
    res = CliRunner().invoke(app, ["compress", "serve", "--help"], env={"COLUMNS": "2000"})
    assert '{"preference": [size, quality]}' in res.output
