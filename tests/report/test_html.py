"""The HTML report: escaped user data, self-contained, verdict first, safe atomic writes."""

from __future__ import annotations

import base64
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import gradwatch.diagnosis
from gradwatch.diagnosis import Finding
from gradwatch.report import render_report, write_report
from gradwatch.trace import Trace

from .conftest import XSS_IMG, XSS_NAME, make_trace, xss_finding


class _Collect(HTMLParser):
    """Every tag with its attributes, and the visible text, from an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(path: Path) -> _Collect:
    p = _Collect()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, checking the signature and the chunk CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16 : 16 + length]
    (crc,) = struct.unpack(">I", data[16 + length : 20 + length])
    assert zlib.crc32(kind + body) == crc
    width, height = struct.unpack(">II", body[:8])
    return width, height


def _tiny(**kw: object) -> Trace:
    """A trace with nothing to plot (only grad_norm), so rendering it is fast."""
    return Trace.from_arrays(["a", "b"], [0, 1], {"grad_norm": np.ones((2, 2))}, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- content
def test_injected_markup_is_escaped_everywhere(reports: dict[str, Path]) -> None:
    """Layer names, run labels, messages, evidence and config render as text, not markup."""
    for path in reports.values():
        html = path.read_text(encoding="utf-8")
        assert "<script>window.__xss" not in html
        assert "<img src=x" not in html
        assert "<b>bold?</b>" not in html
        assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
        parsed = _parse(path)
        assert not [t for t, _ in parsed.tags if t in ("script", "iframe", "object", "embed")]
        assert all(
            a.get("src", "").startswith("data:image/png;base64,")
            for t, a in parsed.tags
            if t == "img"
        )
        assert XSS_NAME in "".join(parsed.text)  # shown to the reader, as text


def test_title_is_escaped(reports: dict[str, Path]) -> None:
    """A title carrying markup is shown as text in <title> and <h1>."""
    html = reports["double"].read_text(encoding="utf-8")
    assert "<title>compare &lt;img src=x onerror=&#34;window.__xss=2&#34;&gt;</title>" in html
    assert f"compare {XSS_IMG}" in "".join(_parse(reports["double"]).text)


def test_report_references_nothing_outside_itself(reports: dict[str, Path]) -> None:
    """Every src/href is a data: URI or an in-page anchor, and a CSP forbids fetching."""
    for path in reports.values():
        parsed = _parse(path)
        for tag, attrs in parsed.tags:
            for key in ("src", "href", "action", "srcset", "poster"):
                value = attrs.get(key)
                if value is not None:
                    assert value.startswith(("data:", "#")), (tag, key, value[:60])
            assert tag not in ("link", "base")
        csp = [
            a
            for t, a in parsed.tags
            if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
        ]
        assert csp and "default-src 'none'" in (csp[0]["content"] or "")
        assert "http://" not in path.read_text() and "https://" not in path.read_text()


def test_images_are_valid_pngs_of_the_figure_size(reports: dict[str, Path]) -> None:
    """Each inlined image decodes as a PNG of 1125 x 630 px (7.5 x 4.2 in at 150 dpi, so it
    stays sharp when the page scales it to its width), and the <img> says that size."""
    parsed = _parse(reports["single"])
    imgs = [a for t, a in parsed.tags if t == "img"]
    # loss, flow, grad heatmap, update heatmap, gain, health, stats, memory, theory
    assert len(imgs) == 9
    for attrs in imgs:
        data = base64.b64decode((attrs["src"] or "").split(",", 1)[1], validate=True)
        assert _png_size(data) == (1125, 630)
        assert (attrs.get("width"), attrs.get("height")) == ("1125", "630")
        assert attrs.get("alt")


def test_verdict_comes_first_with_the_worst_finding_and_first_remedy(
    reports: dict[str, Path],
) -> None:
    """The page opens with the critical finding in plain words and the remedy to try first."""
    html = reports["single"].read_text(encoding="utf-8")
    verdict = html.index('class="verdict critical"')
    assert verdict < html.index("<h3>Findings</h3>") < html.index("<h3>Plots</h3>")
    head = html[verdict : html.index("</section>", verdict)]
    assert "Critical problem — The first layers get 1e-6" in head
    # the first remedy is gw.prescribe's first for this trace (no model: its layer table
    # records no weight shapes, so residual is ruled out and init_xavier leads)
    from gradwatch.remedies import prescribe

    names = [XSS_NAME, XSS_IMG, *[f"net.{i}" for i in range(2, 6)]]
    first = prescribe([xss_finding()], trace=make_trace(names=names))[0]
    assert f"First thing to try: {first.remedy} ({first.reason})." in head
    # the finding offers the hints that layer table allows: init_xavier, not residual
    assert "<code>init_xavier</code>" in html and "<code>residual</code>" not in html


def test_config_versions_and_layer_table_are_shown(reports: dict[str, Path]) -> None:
    """The recorder config, library versions and every layer name appear in the run details."""
    text = "".join(_parse(reports["single"]).text)
    assert "2.13.0" in text and "every" in text
    for name in [XSS_NAME, XSS_IMG, "net.5"]:
        assert name in text


def test_several_runs_get_a_comparison_section(reports: dict[str, Path]) -> None:
    """Two runs: a comparison table with one row per run, overlay plots, one section each."""
    html = reports["double"].read_text(encoding="utf-8")
    comp = html[html.index('<section id="comparison">') : html.index('<section id="run-1">')]
    assert comp.count("<tr>") == 3  # header + 2 runs
    assert 'data-plot="compare_flow"' in comp and 'data-plot="compare_loss"' in comp
    assert 'id="run-2"' in html
    assert '<span class="badge ok">none</span>' in comp  # the healthy run
    assert '<span class="badge critical">1 critical</span>' in comp


def test_element_ids_are_unique(reports: dict[str, Path]) -> None:
    """Every id in the page is unique (two runs draw the same plots)."""
    ids = [a["id"] for t, a in _parse(reports["double"]).tags if a.get("id")]
    assert len(ids) == len(set(ids)) and len(ids) > 8


def test_more_recurrent_layers_than_drawn_are_noted() -> None:
    """Beyond MAX_RECURRENT_PLOTS recurrent layers, the page says how many were left out."""
    from gradwatch.report.html import MAX_RECURRENT_PLOTS

    n = MAX_RECURRENT_PLOTS + 1
    prof = {f"rnn{i}": ([0], np.ones((1, 3))) for i in range(n)}
    t = Trace.from_arrays(
        [f"rnn{i}" for i in range(n)], [0], {"grad_norm": np.ones((1, n))}, recurrent=prof
    )
    html = render_report(t, findings=[])
    assert html.count('data-plot="memory"') == MAX_RECURRENT_PLOTS
    assert f"first {MAX_RECURRENT_PLOTS} of {n} recurrent layers" in html


def test_duplicate_labels_are_made_unique() -> None:
    """Two runs with the same name get distinct labels in the report."""
    html = render_report([_tiny(), _tiny()], findings=[[], []], labels=["same", "same"])
    assert "same (2)" in html


# ---------------------------------------------------------------------- findings argument
def test_flat_findings_for_several_runs_is_rejected() -> None:
    """A flat list of findings is ambiguous with several runs: clear error."""
    with pytest.raises(ValueError, match="one flat list but the report has 2 runs"):
        render_report([_tiny(), _tiny()], findings=[xss_finding()])


def test_findings_mapping_with_unknown_label_is_rejected() -> None:
    """A dict of findings must name runs in the report."""
    with pytest.raises(ValueError, match=r"names runs \['nope'\]"):
        render_report([_tiny()], findings={"nope": []}, labels=["run"])


def test_non_finding_items_are_rejected() -> None:
    """Findings must be Finding objects; the error names the bad item."""
    with pytest.raises(TypeError, match="Finding objects but got str"):
        render_report(_tiny(), findings=[["oops"]])  # type: ignore[list-item]


def test_diagnose_runs_when_findings_are_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """With findings=None the report calls gradwatch.diagnosis.diagnose on each run."""
    seen: list[Trace] = []

    def fake(trace: Trace) -> list[Finding]:
        seen.append(trace)
        return [Finding("loss_plateau", "warning", (), None, {}, "Loss is flat.", ())]

    monkeypatch.setattr(gradwatch.diagnosis, "diagnose", fake, raising=False)
    t = _tiny()
    html = render_report(t)
    assert seen == [t]
    assert "Warning — Loss is flat." in html


def test_a_run_without_findings_says_the_rules_did_not_run() -> None:
    """A run given as not diagnosed (None), the verdict says the rules did not run."""
    html = render_report(_tiny(), findings=[None])
    assert "The diagnosis did not run" in html


def test_no_findings_reads_as_all_clear() -> None:
    """An empty findings list gives an all-clear verdict in plain words."""
    html = render_report(_tiny(), findings=[])
    assert "No problem found: the diagnosis rules all stayed quiet." in html
    assert 'class="verdict ok"' in html


def test_predicted_must_be_one_per_run_for_several_runs() -> None:
    """A single prediction for several runs is rejected with the fix."""
    with pytest.raises(ValueError, match="one entry .* per run \\(2 runs\\)"):
        render_report([_tiny(), _tiny()], findings=[[], []], predicted=0.5)


# ---------------------------------------------------------------------- writing
def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    """The report replaces the target in one rename; the directory holds only the report."""
    out = tmp_path / "r.html"
    out.write_text("old")
    assert write_report(_tiny(), out, findings=[]) == out
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)


def test_failed_render_keeps_the_old_file(tmp_path: Path) -> None:
    """A report that fails to build leaves an existing file as it was, and no temp file."""
    out = tmp_path / "r.html"
    out.write_text("old")
    with pytest.raises(TypeError):
        write_report(_tiny(), out, findings=[[1]])  # type: ignore[list-item]
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


def test_symlink_target_is_never_written(tmp_path: Path) -> None:
    """If out_path is a symlink, the link is replaced and the file it pointed to is untouched."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "important.txt"
    victim.write_text("keep me")
    reports = tmp_path / "reports"
    reports.mkdir()
    link = reports / "r.html"
    link.symlink_to(victim)
    write_report(_tiny(), link, findings=[])
    assert victim.read_text() == "keep me"
    assert not link.is_symlink() and link.read_text(encoding="utf-8").startswith("<!DOCTYPE")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["important.txt"]


def test_missing_directory_is_an_error_not_created(tmp_path: Path) -> None:
    """The output directory is not created: a typo'd path fails with the fix."""
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        write_report(_tiny(), tmp_path / "nope" / "r.html", findings=[])
    assert not (tmp_path / "nope").exists()


def test_directory_as_out_path_is_rejected(tmp_path: Path) -> None:
    """out_path must be a file path."""
    with pytest.raises(ValueError, match="is a directory"):
        write_report(_tiny(), tmp_path, findings=[])


def test_run_directory_is_loaded(tmp_path: Path) -> None:
    """A run directory path is loaded with gw.load and labelled with its name."""
    from gradwatch.trace import RunWriter

    run = tmp_path / "exp7"
    RunWriter(run).write_meta({"layers": [], "config": {"every": 3}, "created": 86400.0})
    html = render_report(str(run), findings=[])
    assert "gradwatch report: exp7" in html and "<th>every</th><td><code>3</code>" in html
    assert "<code>1970-01-02 00:00:00 UTC</code>" in html  # one day after the Unix epoch


def test_recorded_trace_report(tmp_path: Path) -> None:
    """A trace recorded by gw.watch on a small sigmoid MLP renders with its plots."""
    torch = pytest.importorskip("torch")
    import gradwatch as gw

    model = torch.nn.Sequential(
        *[m for _ in range(4) for m in (torch.nn.Linear(8, 8), torch.nn.Sigmoid())],
        torch.nn.Linear(8, 1),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 8), torch.randn(16, 1)
    with gw.watch(model, opt, run_dir=tmp_path / "run", sample_every=5) as w:
        for _ in range(10):
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    trace = gw.load(tmp_path / "run")
    out = write_report(trace, tmp_path / "r.html", findings=[])
    parsed = _parse(out)
    ids = [a.get("data-plot") for t, a in parsed.tags if t == "figure"]
    assert ids[:4] == ["loss", "flow", "heat_grad", "heat_update"]
    assert "gain" in ids and "health" in ids
    # The sigmoid stack loses gradient towards the input: the verdict quantifies it.
    rms = trace.matrix("grad_rms")
    ratio = float(np.median(rms[:, 0] / rms[:, -1]))  # the labelled one: median over steps
    text = "".join(parsed.text)
    assert f"First/last layer gradient RMS ratio: {ratio:.2g} (median over steps 0-" in text
    # the flow sentence: a least-squares fit of log10 RMS over the 4 hidden layers per step,
    # its median (independent reference: np.polyfit)
    fits = [np.polyfit(np.arange(4), np.log10(row[:4]), 1)[0] * 3 for row in rms]
    decades = float(np.median(fits))
    sentence = (
        "Gradients flow evenly through depth"
        if abs(decades) < 1
        else "The gradient vanishes toward the input"
        if decades > 0
        else "The gradient grows toward the input"
    )
    assert f"{sentence}: over the 4 hidden weight layers (L0 0 … L3 6)" in text


def test_report_says_which_layers_have_no_activation_recognised() -> None:
    """Weight layers the recorder found no activation after are listed by label (issue 12)."""
    import torch
    from torch import nn

    import gradwatch as gw

    class Odd(nn.Module):  # a parameter-free module that is no activation
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flip(-1)

    model = nn.Sequential(nn.Linear(4, 8), Odd(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt) as w:
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(16, 4)).pow(2).mean().backward()
            opt.step()
    assert w.trace.meta["activations"]["unrecognised"] == ["0", "4"]
    html = render_report(w.trace)
    assert "No activation was recognised after 2 weight layer(s): L0 0, L2 4." in html


# ---------------------------------------------------------------------- many runs
def _verdict_sections(html: str) -> list[int]:
    """Positions of the verdict sections in the page."""
    import re

    return [m.start() for m in re.finditer(r'<section class="verdict', html)]


@pytest.mark.parametrize("n", [4, 5])
def test_more_than_four_runs_get_one_row_each_instead_of_cards(n: int) -> None:
    """Up to 4 runs: a verdict card each above the comparison. Beyond: none there; the
    comparison table has one row per run with its verdict, and each run's section opens
    with its card."""
    runs = [_tiny(meta={"name": f"run{k}"}) for k in range(n)]
    html = render_report(runs, [[] for _ in runs])
    top = html.index('<section id="comparison">')
    cards = _verdict_sections(html)
    assert len(cards) == n
    table = html[html.index('<table class="runs">') : html.index("</table>", top)]
    assert table.count("<tr>") == n + 1
    if n <= 4:
        assert all(c < top for c in cards)
        assert "<th>most severe</th>" in table
    else:
        assert all(c > top for c in cards)
        assert "<th>verdict</th>" in table and table.count("No problem found") == n
        for k in range(n):  # each card sits in its run's own section
            section = html.index(f'<section id="run-{k + 1}">')
            assert any(c > section for c in cards)


def test_report_of_several_runs_counts_them_on_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering several runs advances one bar per run, labelled with the run."""
    from contextlib import contextmanager
    from typing import Any

    from gradwatch.report import console

    calls: list[tuple[str, Any]] = []

    class _Handle(console.ProgressHandle):
        def advance(self, n: float = 1) -> None:
            calls.append(("advance", n))

        def update(self, **kw: Any) -> None:
            calls.append(("update", kw.get("description")))

    @contextmanager
    def fake(description: str | None, total: float | None = None, **kw: Any) -> Any:
        calls.append(("open", (description, total, kw.get("enabled"))))
        yield _Handle()

    monkeypatch.setattr(console, "progress", fake)
    render_report([_tiny(meta={"name": "a"}), _tiny(meta={"name": "b"})], [[], []])
    assert calls == [
        ("open", ("report", 2, None)),
        ("update", "report: a"),
        ("advance", 1),
        ("update", "report: b"),
        ("advance", 1),
    ]
    calls.clear()
    render_report(_tiny(meta={"name": "one"}), [])
    assert calls[0] == ("open", ("report", 1, False))  # one run: no bar unless asked
