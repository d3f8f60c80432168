"""What the installed packages may import, read from their source (nothing is imported).

- No module of an installed package imports `tests` (at any depth, lazily or not): the packages
  must work where only they are installed. setup.py's PACKAGE_ROOTS names them.
- The store's modules import each other without a loop (pushd.store.opening sits above db.py and
  migrations.py, which once imported each other).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _package_roots() -> dict[str, str]:
    """setup.py's PACKAGE_ROOTS (installed package name -> folder), read without running it."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "PACKAGE_ROOTS" for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no PACKAGE_ROOTS")


def _modules(package: str, folder: Path) -> Iterator[tuple[str, Path]]:
    """(dotted module name, file) of every .py file under `folder`, installed as `package`."""
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join([package, *parts]), path


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(absolute module name, line) of every import in the file, in functions too. For `from X
    import a`, both X and X.a are given (a may be a submodule)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            yield name, node.lineno
            for alias in node.names:
                yield f"{name}.{alias.name}", node.lineno


def test_no_installed_module_imports_tests() -> None:
    found: dict[str, str] = {}  # "file:line" -> the first module that line imports from tests
    for package, folder in _package_roots().items():
        for module, path in _modules(package, REPO / folder):
            for name, line in _imports(module, path):
                if name == "tests" or name.startswith("tests."):
                    found.setdefault(f"{path.relative_to(REPO)}:{line}", name)
    assert not found, "\n".join(f"{place}: imports {name}" for place, name in found.items())


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop in `graph` (module -> modules it imports), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph[module]):
            loop = visit(imported)
            if loop:
                return loop
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        loop = visit(module)
        if loop:
            return loop
    return None


def test_store_modules_import_no_loop() -> None:
    modules = dict(_modules("pushd.store", REPO / "pushd" / "store"))
    # The package's __init__ only re-exports its modules: an edge into it is no loop of theirs.
    del modules["pushd.store"]
    graph = {
        module: {name for name, _ in _imports(module, path) if name in modules and name != module}
        for module, path in modules.items()
    }
    loop = _cycle(graph)
    assert loop is None, "import loop: " + " -> ".join(loop or [])


def test_the_loop_check_finds_a_loop() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
