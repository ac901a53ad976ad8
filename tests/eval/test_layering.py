"""eval scores and imports no method: nothing under headwise/eval may import headwise.vhr, .cl or .compress."""

import ast
from pathlib import Path

import headwise.eval

METHODS = ("headwise.vhr", "headwise.cl", "headwise.compress")


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module a file imports, at any depth (top level, functions, branches), relative imports resolved."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # from headwise import vhr
    return names


def test_eval_imports_no_method():
    root = Path(headwise.eval.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) >= 5
    def is_method(module: str) -> bool:
        return any(module == m or module.startswith(m + ".") for m in METHODS)

    offenders = {str(f.relative_to(root)): sorted(filter(is_method, imported_modules(f, "headwise.eval")))
                 for f in files}
    assert {f: m for f, m in offenders.items() if m} == {}


def test_the_check_sees_every_import_form(tmp_path):
    code = ("import headwise.vhr\nfrom headwise import cl\ndef f():\n    from ..compress import x\n"
            "    if True:\n        from headwise.vhr.inputs import load_image\n")
    (tmp_path / "m.py").write_text(code)
    found = imported_modules(tmp_path / "m.py", "headwise.eval")
    assert {"headwise.vhr", "headwise.cl", "headwise.compress.x", "headwise.vhr.inputs"} <= found
