"""The docs runner itself: it runs what a page shows, skips only with a reason, and fails
on a broken example (fixture pages in tests/docs/fixtures/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ._runner import ROOT, BlockFailedError, DocFormatError, Page, parse_blocks

FIXTURES = Path(__file__).parent / "fixtures"


def _page(name: str) -> Page:
    return Page(FIXTURES / name)


def test_parse_finds_fences_languages_and_markers() -> None:
    """Blocks come with their language, first line and the markers just above them."""
    blocks = parse_blocks(FIXTURES / "good.md")
    assert [b.lang for b in blocks] == ["python"] * 4 + ["bash", "console", "toml"]
    assert blocks[2].not_run == "would fail; the runner must skip it"
    assert blocks[3].fixtures == ["model", "batches"]
    assert [b.runnable for b in blocks] == [True] * 6 + [False]
    assert blocks[0].line == 6
    # a console block runs its `$ ` lines with their continuations, not the output
    assert blocks[5].shell_script() == (
        "gradwatch theory --activation tanh \\\n    --sigma-w2 1.5 --sigma-b2 0.05 --format json"
    )


def test_good_page_runs_in_order_in_one_namespace() -> None:
    """Every runnable block of the good page runs; the not-run one is never executed."""
    page = _page("good.md")
    try:
        last = max(b.index for b in page.blocks if b.runnable)
        page.run_through(last)
        assert page.ns["total"] == 6
        assert 2 not in page.done  # the not-run block
        assert (page.dir / "findings.json").exists()  # shell blocks share the directory
    finally:
        page.close()


def test_broken_python_block_fails_naming_page_line_and_error() -> None:
    """A block raising NameError fails with the page, the line and the error; a later block
    that depends on it fails too, saying which earlier block broke."""
    page = _page("broken.md")
    try:
        with pytest.raises(BlockFailedError, match=r"broken\.md:7:[\s\S]*NameError"):
            page.run_through(1)
        with pytest.raises(
            BlockFailedError, match=r"broken\.md:11: an earlier block .*broken\.md:7"
        ):
            page.run_through(2)
    finally:
        page.close()


def test_broken_shell_block_fails_with_its_exit_status() -> None:
    """A gradwatch command that exits non-zero fails the block, with its output."""
    page = _page("broken_shell.md")
    try:
        with pytest.raises(BlockFailedError, match=r"exit status 2[\s\S]*does not exist"):
            page.run_through(0)
    finally:
        page.close()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("<!-- not-run: -->\n```python\npass\n```\n", "needs a reason"),
        ("<!-- not-run:    -->\n```bash\ngradwatch demo\n```\n", "needs a reason"),
        ("<!-- slow: -->\n```python\npass\n```\n", "needs a reason"),
        ("<!-- skip: because -->\n```python\npass\n```\n", "unknown code-block marker 'skip'"),
        ("```python\npass\n", "never closed"),
    ],
)
def test_malformed_markers_and_fences_are_errors(text: str, match: str) -> None:
    """A not-run/slow marker without a reason, an unknown marker or an open fence is an error."""
    with pytest.raises(DocFormatError, match=match):
        parse_blocks(Path("page.md"), text)


def test_unknown_fixture_is_an_error() -> None:
    """A fixture name the runner does not know fails the block and lists the known ones."""
    page = Page(Path("page.md"), "<!-- fixtures: my_model -->\n```python\nmy_model\n```\n")
    try:
        with pytest.raises(BlockFailedError, match=r"unknown fixture\(s\) \['my_model'\]"):
            page.run_through(0)
    finally:
        page.close()


def test_pytest_run_over_a_broken_page_fails() -> None:
    """The CI entry (test_snippets.py) exits 1 on a page with a broken example and names it."""
    env = dict(os.environ, GRADWATCH_DOCS_PAGES=str(FIXTURES / "broken.md"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/docs/test_snippets.py", "-q", "-n", "0",
         "-p", "no:randomly", "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-2000:]
    assert "broken.md:7" in out and "NameError" in out
    assert "2 failed, 1 passed" in out, out[-2000:]
