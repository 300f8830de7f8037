"""Hostile layer names print as written in every console renderer and are escaped in HTML."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.cli.main import main

from ._helpers import train

HOSTILE = ["[/x]_0", "[bold red]_1", "<script>alert(1)</script>"]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deep sigmoid stack (so there are findings to print) whose layers have hostile names."""
    torch.manual_seed(0)  # (its findings, and the layers they list, depend on the init)
    model = nn.Sequential()
    for i in range(8):
        name = HOSTILE[i] if i < len(HOSTILE) else f"l{i}"
        model.add_module(name, nn.Linear(8 if i else 4, 8 if i < 7 else 1))
        if i < 7:
            model.add_module(f"s{i}", nn.Sigmoid())
    run = tmp_path_factory.mktemp("hostile") / "run"
    train(run, 20, model=model)
    return run


def test_trace_keeps_the_names(hostile_run: Path) -> None:
    assert gw.load(hostile_run).layer_names[:3] == HOSTILE


@pytest.mark.parametrize("command", [["diagnose"], ["fix"], ["explain"]])
def test_cli_prints_names_literally(
    command: list[str], hostile_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, str(hostile_run)]) == 0
    out = capsys.readouterr().out
    # No name loses its brackets (rich would print "[bold red]_1" as "_1").
    assert out.count("_1") == out.count("[bold red]_1") and out.count("_0") == out.count("[/x]_0")
    if command == ["explain"]:  # the walk lists every layer
        assert all(name in out for name in HOSTILE)


def test_findings_on_a_terminal_console(hostile_run: Path) -> None:
    """The rich table (a terminal) and the brief lines keep brackets and severity tags: the
    hostile names the run's findings list print as written in the table, and a message that
    names them (as ``unstable_updates``' and ``saturated_activation``'s do) prints as
    written in both forms."""
    from rich.console import Console

    from gradwatch.report.console import print_findings

    findings = list(gw.diagnose(gw.load(hostile_run)))
    listed = {n for f in findings for n in f.layers[:3] if n in HOSTILE}
    assert listed
    said = dataclasses.replace(
        findings[0], message=f"The weights of layer {HOSTILE[0]!r} and {HOSTILE[1]!r} stopped."
    )
    for brief in (False, True):
        buf = io.StringIO()
        con = Console(file=buf, force_terminal=True, width=300, color_system=None)
        print_findings([*findings, said], con, brief=brief, about="x")
        text = buf.getvalue()
        assert f"layer {HOSTILE[0]!r} and {HOSTILE[1]!r} stopped" in text
        if brief:
            assert "[critical]" in text or "[warning]" in text
        else:
            assert all(name in text for name in listed)


def test_progress_descriptions_are_not_markup() -> None:
    from rich.console import Console

    from gradwatch.report.console import progress

    buf = io.StringIO()
    con = Console(file=buf, force_terminal=True, width=200, color_system=None)
    with progress("[/x] sweep", 2, enabled=True, console=con) as bar:
        bar.bar("[bold red]run", 1).advance()
        bar.print("[warning] literal")
    text = buf.getvalue()
    assert "[/x] sweep" in text and "[bold red]run" in text and "[warning] literal" in text


def test_html_report_escapes_names(hostile_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(hostile_run), "--out", str(out)]) == 0
    html = out.read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_demo_severity_tags_survive_a_terminal() -> None:
    """The demo prints findings through print_findings(brief=True) on the bars' console."""
    from rich.console import Console

    from gradwatch.diagnosis import Finding
    from gradwatch.report.console import print_findings

    f = Finding(rule="vanishing_gradient", severity="critical", layers=("[/x]_0",),
                steps=(0, 1), evidence={}, message="[/x] gone")  # fmt: skip
    buf = io.StringIO()
    print_findings([f], Console(file=buf, force_terminal=True, color_system=None), brief=True)
    assert "[critical] vanishing_gradient: [/x] gone" in buf.getvalue()


def test_notebook_cards_escape_names(hostile_run: Path) -> None:
    """The Jupyter cards of a trace, a diagnosis and a finding show hostile names as text."""
    import xml.etree.ElementTree as ET

    trace = gw.load(hostile_run)
    findings = gw.diagnose(trace)
    named = next(f for f in findings if any(n in f.layers for n in HOSTILE))
    for obj in (trace, findings, named):
        html = obj._repr_html_()
        assert "<script>" not in html
        # Well-formed markup: a name cannot open or close an element of the card.
        root = ET.fromstring(html)
        assert root.get("class") == "gradwatch-card"
        text = "".join(root.itertext())
        shown = [name for name in HOSTILE if name in text]
        # The trace's sparkline names every layer; a finding names at least one of them.
        assert shown == HOSTILE if obj is trace else shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in trace._repr_html_()
