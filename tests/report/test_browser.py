"""The HTML report in a real headless Chromium: loads cleanly, images decode, no script runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ._browser import Browser, PageLog, browser_marks, find_chromium
from .conftest import XSS_IMG, XSS_NAME

CHROMIUM = find_chromium()

pytestmark = browser_marks(CHROMIUM)

IMAGES_JS = """
Promise.all(Array.from(document.images).map(img =>
    img.decode().then(() => [img.naturalWidth, img.naturalHeight], e => ['failed', String(e)])))
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module, driven over the DevTools pipe."""
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as b:
        yield b


def _assert_clean(log: PageLog) -> None:
    assert log.console_errors == []
    assert log.exceptions == []
    assert log.log_errors == []
    # Only the page itself and its inline data: images; nothing from the network.
    assert all(url.startswith(("file://", "data:")) for url in log.requests), log.requests


@pytest.mark.parametrize("which", ["single", "double"])
def test_report_loads_without_errors_and_every_image_decodes(
    browser: Browser, reports: dict[str, Path], which: str
) -> None:
    """No console error or exception, no network request, every image decodes at 1125x630."""
    session, log = browser.open(reports[which])
    _assert_clean(log)
    sizes = browser.evaluate(session, IMAGES_JS)
    assert len(sizes) >= 8
    assert all(s == [1125, 630] for s in sizes), sizes


@pytest.mark.parametrize("which", ["single", "double"])
def test_injected_script_in_names_does_not_run(
    browser: Browser, reports: dict[str, Path], which: str
) -> None:
    """A layer/run named <script>...</script> or <img onerror=...> shows as text, runs nothing."""
    session, log = browser.open(reports[which])
    _assert_clean(log)
    state = browser.evaluate(
        session,
        "[typeof window.__xss, document.scripts.length, document.body.textContent]",
    )
    assert state[0] == "undefined"
    assert state[1] == 0
    assert XSS_NAME in state[2]
    if which == "single":  # the evidence and layer table (in <details>) carry it too
        assert XSS_IMG in state[2]


def test_escaping_alone_stops_the_script_without_the_csp(
    browser: Browser, reports: dict[str, Path], tmp_path: Path
) -> None:
    """With the Content-Security-Policy removed, the escaped names still do not run."""
    html = reports["single"].read_text(encoding="utf-8")
    start = html.index('<meta http-equiv="Content-Security-Policy"')
    stripped = html[:start] + html[html.index(">", start) + 1 :]
    page = tmp_path / "no_csp.html"
    page.write_text(stripped, encoding="utf-8")
    session, log = browser.open(page)
    _assert_clean(log)
    assert browser.evaluate(session, "typeof window.__xss") == "undefined"


def test_the_check_detects_a_script_that_does_run(browser: Browser, tmp_path: Path) -> None:
    """Negative control: an unescaped injected script is caught by the same checks."""
    page = tmp_path / "bad.html"
    page.write_text(f"<!DOCTYPE html><html><body><p>{XSS_NAME}</p></body></html>")
    session, _ = browser.open(page)
    assert browser.evaluate(session, "window.__xss") == 1


def test_the_check_detects_console_errors_and_broken_images(
    browser: Browser, tmp_path: Path
) -> None:
    """Negative control: a console error and an undecodable image are both reported."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><img src='data:image/png;base64,AAAA'>"
        "<script>console.error('boom')</script></body></html>"
    )
    session, log = browser.open(page)
    assert any("boom" in e for e in log.console_errors)
    assert browser.evaluate(session, IMAGES_JS)[0][0] == "failed"
