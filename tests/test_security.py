"""Nothing headwise loads can run code: no pickle, torch.load only with weights_only=True, no trust_remote_code
unless the user passes it. Read from the source (the AST, so comments and docs may name these freely)."""

import ast
from pathlib import Path

import pytest

import headwise

ROOT = Path(headwise.__file__).parent
SOURCES = sorted(ROOT.rglob("*.py"))


def trees():
    for path in SOURCES:
        yield path.relative_to(ROOT), ast.parse(path.read_text(), filename=str(path))


def names(tree):
    """Every identifier the code uses: names, attributes, imports, keyword arguments."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.id, node.lineno
        elif isinstance(node, ast.Attribute):
            yield node.attr, node.lineno
        elif isinstance(node, ast.alias):
            yield node.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, node.lineno
        elif isinstance(node, ast.keyword) and node.arg:
            yield node.arg, node.value.lineno


def keyword(call, name):
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_sources_are_found():
    assert len(SOURCES) > 30 and any(p.name == "trainer.py" for p in SOURCES)


def test_no_pickle_anywhere():
    """pickle, cPickle, cloudpickle, allow_pickle=..., Unpickler, dill: all can execute code when loading."""
    found = [f"{path}:{line} {name}" for path, tree in trees() for name, line in names(tree)
             if "pickle" in name.lower() or name == "dill"]
    assert found == []


def test_no_weights_only_false():
    """Fails until cl/trainer.py's resume (torch.load(..., weights_only=False)) is replaced (issue 16)."""
    found = [f"{path}:{node.lineno}" for path, tree in trees() for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(keyword(node, "weights_only"), ast.Constant)
             and keyword(node, "weights_only").value is not True]
    assert found == []


def test_torch_load_always_says_weights_only_true():
    found = []
    for path, tree in trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                flag = keyword(node, "weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    found.append(f"{path}:{node.lineno}")
    assert found == []


@pytest.mark.parametrize("flag", ["trust_remote_code"])
def test_remote_code_is_never_switched_on_in_the_code(flag):
    found = [f"{path}:{node.lineno}" for path, tree in trees() for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(keyword(node, flag), ast.Constant)
             and keyword(node, flag).value is True]
    assert found == []
