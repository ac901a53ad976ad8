"""The layering of headwise (docs/architecture.md), checked on the source's imports at any depth:

- the spine, headwise.heads, imports only itself and headwise.errors;
- eval scores and imports no method (vhr, cl, compress, testbed);
- models imports no package that provides a model (testbed) and no method;
- nothing outside cli/ (library or benchmarks) imports headwise.cli;
- the packages and top-level modules import each other without a circle.
"""

import ast
from pathlib import Path

import headwise

ROOT = Path(headwise.__file__).parent
METHODS = ("headwise.vhr", "headwise.cl", "headwise.compress", "headwise.testbed")


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


def modules(root: Path = ROOT) -> dict[str, tuple[Path, str]]:
    """headwise module name -> (file, the package its relative imports resolve against)."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = f.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        out[name] = (f, name if f.name == "__init__.py" else name.rsplit(".", 1)[0])
    return out


def headwise_imports(name: str) -> set[str]:
    f, package = modules()[name]
    return {m for m in imported_modules(f, package) if m == "headwise" or m.startswith("headwise.")}


def within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def offenders(prefix: str, allowed) -> dict[str, list[str]]:
    found = {}
    for name in modules():
        if within(name, [prefix]):
            bad = sorted(m for m in headwise_imports(name) if not within(m, allowed))
            if bad:
                found[name] = bad
    return found


def room(module: str) -> str | None:
    """The package or top-level module a headwise module belongs to: headwise.vhr.core -> headwise.vhr."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1].startswith("__"):
        return None  # the top package itself (its lazy re-exports) and `from headwise import __version__`
    candidate = ".".join(parts[:2])
    known = modules()
    return candidate if candidate in known or any(n.startswith(candidate + ".") for n in known) else None


def test_the_spine_imports_only_itself_and_errors():
    assert len([n for n in modules() if within(n, ["headwise.heads"])]) >= 4
    assert offenders("headwise.heads", ["headwise.heads", "headwise.errors"]) == {}


def test_eval_imports_no_method():
    assert len([n for n in modules() if within(n, ["headwise.eval"])]) >= 5
    found = {n: [m for m in headwise_imports(n) if within(m, METHODS)] for n in modules() if within(n, ["headwise.eval"])}
    assert {n: m for n, m in found.items() if m} == {}


def test_models_imports_no_testbed_and_no_method():
    assert [m for m in headwise_imports("headwise.models") if within(m, METHODS)] == []


def test_nothing_outside_cli_imports_the_cli():
    outside = {n: [m for m in headwise_imports(n) if within(m, ["headwise.cli"])] for n in modules()
               if not within(n, ["headwise.cli"])}
    assert {n: m for n, m in outside.items() if m} == {}
    benchmarks = Path(__file__).parents[1] / "benchmarks"
    scripts = {str(f.name): sorted(m for m in imported_modules(f, "benchmarks") if within(m, ["headwise.cli"]))
               for f in benchmarks.glob("*.py")}
    assert scripts and {f: m for f, m in scripts.items() if m} == {}


def test_no_circle_between_packages():
    edges: dict[str, set[str]] = {}
    for name in modules():
        src = room(name)
        if src is None:
            continue
        edges.setdefault(src, set()).update(d for d in map(room, headwise_imports(name)) if d and d != src)
    assert {"headwise.heads", "headwise.vhr", "headwise.cl", "headwise.compress", "headwise.eval",
            "headwise.integrations"} <= set(edges)

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(edges.get(node, ()))
        return False

    circles = sorted((a, b) for a in edges for b in edges[a] if reaches(b, a))
    assert circles == []


def test_the_checks_see_every_import_form(tmp_path):
    code = ("import headwise.vhr\nfrom headwise import cl\ndef f():\n    from ..compress import x\n"
            "    if True:\n        from headwise.vhr.inputs import load_image\n")
    (tmp_path / "m.py").write_text(code)
    found = imported_modules(tmp_path / "m.py", "headwise.eval")
    assert {"headwise.vhr", "headwise.cl", "headwise.compress.x", "headwise.vhr.inputs"} <= found
    assert room("headwise.vhr.core") == "headwise.vhr" and room("headwise.runs") == "headwise.runs"
    assert room("headwise.__version__") is None
