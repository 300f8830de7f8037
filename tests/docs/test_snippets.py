"""Every code example in README.md and docs/*.md runs as written (tests/docs/_runner.py).

One test per runnable block, ``<page>:<line>``; a page's Python blocks share one namespace
and one temporary directory and run in order, so running one block runs the blocks above it
first (once per test process). ``<!-- not-run: reason -->`` blocks are reported as skipped
with their reason; ``<!-- slow: reason -->`` blocks run only with ``-m slow``.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

import pytest

from ._runner import ROOT, Block, Page, parse_blocks

#: The pages whose examples run: README.md and docs/*.md, or (to test the runner on a
#: fixture page) the paths in GRADWATCH_DOCS_PAGES, separated by os.pathsep.
_OVERRIDE = os.environ.get("GRADWATCH_DOCS_PAGES")
PAGES = (
    [Path(p) for p in _OVERRIDE.split(os.pathsep)]
    if _OVERRIDE
    else [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
)
_open: dict[Path, Page] = {}


def _page(path: Path) -> Page:
    if path not in _open:
        _open[path] = Page(path)
    return _open[path]


@atexit.register
def _close_pages() -> None:
    for page in _open.values():
        page.close()


def _params() -> list[object]:
    params: list[object] = []
    for path in PAGES:
        for block in parse_blocks(path):
            if not block.runnable:
                continue
            marks: list[pytest.MarkDecorator] = []
            if block.not_run:
                marks.append(pytest.mark.skip(reason=f"not-run: {block.not_run}"))
            if block.slow:
                marks.append(pytest.mark.slow)
            params.append(pytest.param(block, id=block.where, marks=marks))
    return params


@pytest.mark.parametrize("block", _params())
def test_documented_block_runs(block: Block) -> None:
    """The block runs without error after the blocks above it on its page."""
    _page(block.path).run_through(block.index)


@pytest.mark.skipif(bool(_OVERRIDE), reason="GRADWATCH_DOCS_PAGES chose other pages")
def test_every_page_has_runnable_examples_collected() -> None:
    """The collector finds the pages' examples (a broken fence parser would find none)."""
    runnable = [b for p in PAGES for b in parse_blocks(p) if b.runnable]
    assert len({b.path for b in runnable}) >= 5, [b.where for b in runnable]
    assert any(b.lang == "python" for b in runnable)
    assert any(b.lang in ("bash", "console") for b in runnable)
