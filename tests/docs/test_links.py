"""Links between the docs resolve: files exist, #anchors name a heading of their page, and
every dotted ``gradwatch.``/``gw.`` name a page puts in backticks can be imported."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from ._pages import anchors, links, outside_code
from ._runner import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto: ...


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def broken_links(page: Path) -> list[str]:
    """Every relative link or image of ``page`` whose file or #anchor does not exist."""
    text = page.read_text()
    bad = []
    for line, target in links(text):
        if _EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path_part)).resolve() if path_part else page
        where = f"{_rel(page)}:{line}: {target}"
        if not dest.exists():
            bad.append(f"{where} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            bad.append(f"{where} (no heading with anchor #{anchor} in {dest.name})")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    """Every relative link and image points to a file that exists, and to a heading there."""
    assert not broken_links(page)


def test_link_checker_catches_a_broken_file_and_anchor(tmp_path: Path) -> None:
    """A missing file, a missing anchor and a link inside code are told apart."""
    (tmp_path / "other.md").write_text("# Other page\n\n## What can go wrong?\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n[ok](other.md#what-can-go-wrong) [self](#page) [web](https://x.org/y)\n"
        "[gone](missing.md) [bad anchor](other.md#nope) `[code](missing.md)`\n"
        "```\n[in a block](missing.md)\n```\n"
    )
    bad = broken_links(page)
    assert len(bad) == 2 and "missing.md (no such file)" in bad[0] and "#nope" in bad[1]


_NAME = re.compile(r"`(?P<name>(?:gradwatch|gw)(?:\.[A-Za-z_]\w*)+)")


def api_names(text: str) -> set[str]:
    """Dotted gradwatch names in code spans of prose (``gw.`` is ``gradwatch.``)."""
    names = set()
    for _, line in outside_code(text):
        for m in _NAME.finditer(line):
            names.add(re.sub(r"^gw\.", "gradwatch.", m.group("name")))
    return names


def resolves(name: str) -> bool:
    """Whether ``a.b.c`` is a module or an attribute reachable from the longest module prefix."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_documented_api_names_exist(page: Path) -> None:
    """Every `gradwatch.x.y` / `gw.x` a page names exists where the page says it lives."""
    missing = sorted(n for n in api_names(page.read_text()) if not resolves(n))
    assert not missing, f"{_rel(page)} names what gradwatch does not have there: {missing}"


def test_api_name_check_catches_a_wrong_module() -> None:
    """`gradwatch.report.console.summarize` (documented there once, defined elsewhere) fails."""
    assert resolves("gradwatch.report.summary.summarize")
    assert not resolves("gradwatch.report.console.summarize")
    assert api_names("see `gw.diagnose(trace)` and\n```\n`gw.nothing`\n```\n") == {
        "gradwatch.diagnose"
    }


_PATH = re.compile(r"`(?P<path>(?:src|tests|benchmarks|docs|\.ci)/[\w./-]*\w/?|[\w-]+\.md)`")


def missing_paths(text: str) -> set[str]:
    """Repository paths a page names in code spans (``benchmarks/x.py``, ``DESIGN.md``) that
    the repository does not hold."""
    found = set()
    for _, line in outside_code(text):
        for m in _PATH.finditer(line):
            path = m.group("path")
            if not (ROOT / path).exists() and not (ROOT / "docs" / path).exists():
                found.add(path)
    return found


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_named_repository_paths_exist(page: Path) -> None:
    """Every repository path a page names in backticks exists (no DESIGN.md that is not there)."""
    assert not missing_paths(page.read_text())


def test_path_check_catches_a_missing_file() -> None:
    """A path to a file the repository lacks is reported; an existing one is not."""
    text = "see `DESIGN.md`, `benchmarks/overhead.py` and `tests/docs/nothing.py`"
    assert missing_paths(text) == {"DESIGN.md", "tests/docs/nothing.py"}
