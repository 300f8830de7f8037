"""The package's import graph follows the layering in docs/architecture.md.

Parsed from the source (``ast``), so it sees every arrow: module level, inside functions and
under ``TYPE_CHECKING``. A lower package importing a higher one, a cycle, or an
``importlib`` look-up of gradwatch's own code outside the allowed registries fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gradwatch"

#: Leaf modules: they import nothing of gradwatch.
LEAVES = frozenset({"_version", "_ops", "_activations"})

#: package -> the packages it may import (leaves are allowed everywhere). The table of
#: docs/architecture.md; keep the two in step.
ALLOWED: dict[str, frozenset[str]] = {
    "trace": frozenset(),
    "theory": frozenset({"trace"}),  # the chain-rule walk reads a recorded run
    "diagnosis": frozenset({"trace"}),
    "recording": frozenset({"trace"}),
    "remedies": frozenset({"diagnosis", "trace"}),
    "report": frozenset({"trace", "diagnosis", "theory"}),
    "live": frozenset({"recording", "diagnosis", "trace"}),
    "integrations": frozenset({"recording", "live", "diagnosis", "trace"}),
    "lab": frozenset({"trace", "diagnosis", "recording", "remedies", "theory", "report"}),
    "cli": frozenset(
        {"trace", "diagnosis", "recording", "remedies", "theory", "report", "live", "lab"}
    ),
}

#: Files that may look up gradwatch's own modules by name: the lazy public API and the
#: registries of CLI sub-commands and lab studies.
IMPORTLIB_ALLOWED = frozenset(
    {"__init__.py", "lab/__init__.py", "cli/main.py", "lab/studies/__init__.py"}
)


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(["gradwatch", *parts]), path


MODULES = frozenset(m for m, _ in _modules())


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imports(module: str, path: Path) -> Iterator[tuple[str, int, bool]]:
    """(imported gradwatch module, line, at module level) for every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module.split(".") if _is_package(path) else module.split(".")[:-1]
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "gradwatch":
                    yield alias.name, node.lineno, id(node) in top_level
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != "gradwatch":
                continue
            # ``from pkg import name`` imports the sub-module pkg.name when there is one
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in MODULES else target), node.lineno, id(node) in top_level


def _package(module: str) -> str:
    """The layer of a module: its first component below gradwatch ("" = the top level)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _known_packages() -> set[str]:
    return {_package(m) for m, _ in _modules()}


def test_table_names_every_package() -> None:
    """Every sub-package and top-level module has a row in the layering table."""
    unknown = _known_packages() - set(ALLOWED) - LEAVES - {"", "__main__"}
    assert not unknown, f"add {sorted(unknown)} to ALLOWED and docs/architecture.md"


def test_imports_follow_the_layers() -> None:
    """No package imports a package above it, and nothing imports the top-level package."""
    bad = []
    for module, path in _modules():
        src = _package(module)
        if src in ("", "__main__"):
            continue
        for target, line, _ in _imports(module, path):
            dst = _package(target)
            where = f"{path.relative_to(SRC)}:{line} imports {target}"
            if dst == "":
                bad.append(f"{where} (the top-level package: import the leaf module instead)")
            elif src in LEAVES:
                bad.append(f"{where} (a leaf module imports nothing of gradwatch)")
            elif dst != src and dst not in LEAVES and dst not in ALLOWED[src]:
                bad.append(f"{where} ({src} may import only {sorted(ALLOWED[src])})")
    assert not bad, "\n".join(bad)


def _find_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Each cycle found by a depth-first walk, as ``a -> b -> a``."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(" -> ".join([*stack[stack.index(n) :], n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def test_cycle_finder_finds_a_cycle() -> None:
    """The cycle check itself sees a cycle (so its silence on the package means something)."""
    assert _find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a"]
    assert _find_cycles({"a": {"b"}, "b": set()}) == []


def test_private_modules_stay_in_their_package() -> None:
    """A package's private modules (``remedies._common``) are not imported by other packages."""
    bad = []
    for module, path in _modules():
        src = _package(module)
        for target, line, _ in _imports(module, path):
            parts = target.split(".")
            private = any(p.startswith("_") for p in parts[2:])
            if private and _package(target) != src and _package(target) not in LEAVES:
                bad.append(f"{path.relative_to(SRC)}:{line} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    """Module-level imports between gradwatch's modules form no cycle."""
    modules = dict(_modules())
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for target, _, top in _imports(module, path):
            if not top:
                continue
            # ``from pkg import name`` may name a sub-module or an attribute of pkg
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != module and target in modules:
                graph[module].add(target)
    cycles = _find_cycles(graph)
    assert not cycles, "\n".join(cycles)


def _importlib_lookups(path: Path) -> Iterator[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("import_module", "__import__", "find_spec"):
                yield node.lineno


def test_no_optional_lookups_of_own_packages() -> None:
    """gradwatch's packages are imported, not looked up by name (registries excepted)."""
    bad = [
        f"{path.relative_to(SRC)}:{line}"
        for _, path in _modules()
        if path.relative_to(SRC).as_posix() not in IMPORTLIB_ALLOWED
        for line in _importlib_lookups(path)
    ]
    assert not bad, "importlib look-ups outside the registries: " + ", ".join(bad)


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_source_file_fits_one_sitting(path: Path) -> None:
    """No source file is longer than one sitting's read (600 lines)."""
    n = len(path.read_text().splitlines())
    assert n <= 600, f"{path.relative_to(SRC)} has {n} lines; split it by job"
