"""The report's layout in a real headless Chromium at 600 px and 1600 px: nothing overflows.

At each width, JavaScript in the page opens every ``<details>`` (so hidden tables are laid
out too) and measures every element: the page never scrolls sideways, no element reaches
past the viewport except inside a ``.scroll`` box (a wide table scrolls in its own box), no
table column is squeezed to a letter, and plots fill their column. Screenshots are saved
next to the report (``<tmp>/layout/*.png``) for a person to look at.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._browser import Browser, browser_marks, find_chromium
from .conftest import XSS_NAME, _lean, make_trace, xss_finding

CHROMIUM = find_chromium()

pytestmark = browser_marks(CHROMIUM)

WIDTHS = (600, 1600)
LONG = "encoder.layer.11.attention.self.query_key_value_projection_with_a_long_name"

MEASURE_JS = """
(() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const W = document.documentElement.clientWidth;
  const out = {W, innerWidth: window.innerWidth,
               scrollWidth: document.documentElement.scrollWidth, outside: [],
               narrowCells: [], scrollBoxes: 0, scrolling: 0, imgs: []};
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    const box = el.closest('.scroll');
    if (box && box !== el) continue;  // scrolled inside its box, not the page
    if (r.right > W + 0.5 || r.left < -0.5)
      out.outside.push(`${el.tagName}.${el.className} ${r.left.toFixed(0)}..${r.right.toFixed(0)}`);
  }
  for (const cell of document.querySelectorAll('th, td')) {
    const w = cell.getBoundingClientRect().width;
    if (w < 40) out.narrowCells.push(`${cell.tagName} ${w.toFixed(0)} ${cell.textContent.slice(0, 20)}`);
  }
  for (const box of document.querySelectorAll('.scroll')) {
    out.scrollBoxes += 1;
    if (box.scrollWidth > box.clientWidth) out.scrolling += 1;
  }
  for (const img of document.querySelectorAll('.plots img')) {
    const r = img.getBoundingClientRect();
    const col = img.closest('figure').getBoundingClientRect();
    out.imgs.push([Math.round(r.left), Math.round(r.top), Math.round(r.width), Math.round(col.width)]);
  }
  return out;
})()
"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Reports to lay out: one run with hostile and long names, and six runs (compact)."""
    from gradwatch.report import write_report

    out = tmp_path_factory.mktemp("layout")
    names = [XSS_NAME, LONG, *[f"net.{i}" for i in range(2, 6)]]
    single = write_report(
        make_trace(names=names, recurrent=False), out / "single.html", findings=[xss_finding()]
    )
    runs = [_lean(make_trace(names=names, decay=0.05 * k, seed=k)) for k in range(6)]
    many = write_report(runs, out / "many.html", labels=[f"{LONG}-{k}" for k in range(6)])
    return {"single": single, "many": many}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module, driven over the DevTools pipe."""
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as b:
        yield b


def _layout(browser: Browser, page: Path, width: int) -> tuple[dict[str, Any], Path]:
    """Measure the page at ``width`` px and save a full-page screenshot beside it."""
    session, log = browser.open(page)
    assert log.exceptions == [] and log.console_errors == []
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        session,
    )
    m = browser.evaluate(session, MEASURE_JS)
    # The capture lays the whole page out at once, with no vertical scrollbar: hide it for
    # the picture too, so the picture shows the full width (the measure above kept it).
    browser.call("Emulation.setScrollbarsHidden", {"hidden": True}, session)
    height = browser.evaluate(session, "document.documentElement.scrollHeight")
    shot = browser.call(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
        session,
    )
    png = page.with_name(f"{page.stem}-{width}.png")
    png.write_bytes(base64.b64decode(shot["data"]))
    return m, png


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("which", ["single", "many"])
def test_nothing_overflows_the_page(
    browser: Browser, pages: dict[str, Path], which: str, width: int
) -> None:
    """No sideways page scroll, no element past the viewport, no one-letter columns."""
    m, png = _layout(browser, pages[which], width)
    assert m["W"] <= width and m["scrollWidth"] <= m["W"], m
    assert m["outside"] == [], m["outside"][:10]
    assert m["narrowCells"] == [], m["narrowCells"][:10]
    assert png.stat().st_size > 10_000  # a real screenshot was taken


def test_plots_use_the_page_width(browser: Browser, pages: dict[str, Path]) -> None:
    """Narrow: each plot fills its single column. Wide: two plots side by side, each over
    700 px wide (the PNGs are drawn at 1125 px, so scaling keeps them sharp)."""
    narrow, _ = _layout(browser, pages["single"], 600)
    assert narrow["imgs"] and all(w >= col - 2 for _, _, w, col in narrow["imgs"])
    assert all(w >= 540 for _, _, w, _ in narrow["imgs"])  # 600 px minus the page margins
    wide, _ = _layout(browser, pages["single"], 1600)
    tops = [top for _, top, _, _ in wide["imgs"]]
    assert any(tops.count(t) >= 2 for t in tops)  # side by side
    assert all(w >= 700 for _, _, w, _ in wide["imgs"])


def test_wide_tables_scroll_in_their_box(browser: Browser, pages: dict[str, Path]) -> None:
    """At 600 px, the long layer names make some tables wider than the page: they scroll."""
    m, _ = _layout(browser, pages["many"], 600)
    assert m["scrollBoxes"] >= 6 and m["scrolling"] >= 1, m


def test_many_runs_get_one_row_each_instead_of_cards(
    browser: Browser, pages: dict[str, Path]
) -> None:
    """Six runs: no verdict card before the comparison; one table row per run; each run's
    verdict opens its section."""
    session, _ = browser.open(pages["many"])
    state = browser.evaluate(
        session,
        """(() => {
          const cmp = document.getElementById('comparison');
          const before = [...document.querySelectorAll('section.verdict')].filter(
              s => s.compareDocumentPosition(cmp) & Node.DOCUMENT_POSITION_FOLLOWING).length;
          return [before, document.querySelectorAll('table.runs tr').length,
                  document.querySelectorAll('section[id^=run-] > section.verdict').length];
        })()""",
    )
    assert state == [0, 7, 6]


def test_the_check_sees_an_overflowing_element(browser: Browser, tmp_path: Path) -> None:
    """Negative control: a fixed-width block wider than the page is reported."""
    page = tmp_path / "wide.html"
    page.write_text(
        "<!DOCTYPE html><html><body><div style='width:900px'>x</div>"
        "<table><tr><td style='width:10px;max-width:10px'>a</td></tr></table></body></html>"
    )
    m, _ = _layout(browser, page, 600)
    assert m["scrollWidth"] > m["W"] and m["outside"]
    assert m["narrowCells"]
