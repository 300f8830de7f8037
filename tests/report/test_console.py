"""Console tables print user data literally; progress shows only when a person watches."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from gradwatch.diagnosis import Finding, RemedyHint
from gradwatch.report.console import (
    comparison_table,
    findings_table,
    print_findings,
    progress,
    progress_enabled,
    track,
)
from gradwatch.report.summary import summarize

from .conftest import make_trace


def _render(renderable: object, width: int = 200) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(renderable)
    return buf.getvalue()


def _finding(rule: str, severity: str, layer: str = "net.0") -> Finding:
    return Finding(
        rule=rule,
        severity=severity,  # type: ignore[arg-type]
        layers=(layer,),
        steps=(3, 9),
        evidence={},
        message=f"{rule} happened",
        remedies=(RemedyHint("residual", "r"), RemedyHint("init_he", "h")),
    )


def test_findings_table_sorts_by_severity_and_shows_remedies() -> None:
    """Critical rows come before warnings and info; the top remedies are numbered."""
    rows = [
        _finding("loss_plateau", "info"),
        _finding("vanishing_gradient", "critical"),
        _finding("dead_units", "warning"),
    ]
    out = _render(findings_table(rows))
    assert out.index("vanishing_gradient") < out.index("dead_units") < out.index("loss_plateau")
    assert "1. residual" in out and "2. init_he" in out and "3–9" in out


def test_markup_in_names_prints_literally() -> None:
    """A layer named like rich markup is shown as written, not interpreted."""
    out = _render(findings_table([_finding("dead_units", "warning", layer="[bold]x[/bold]")]))
    assert "[bold]x[/bold]" in out


def test_print_findings_without_findings_is_an_all_clear() -> None:
    """No findings prints one plain all-clear line."""
    buf = io.StringIO()
    print_findings([], Console(file=buf, color_system=None))
    assert buf.getvalue().strip() == "No findings: the diagnosis rules all stayed quiet."


def test_comparison_table_shows_each_runs_numbers() -> None:
    """One row per run with its final loss, gradient span and finding counts."""
    a = summarize(make_trace(seed=1), [_finding("vanishing_gradient", "critical")], "sigmoid")
    b = summarize(make_trace(decay=0.0, seed=2), [], "relu")
    out = _render(comparison_table([a, b]))
    assert "sigmoid" in out and "relu" in out
    assert f"{a.final_loss:.4g}" in out and f"{a.grad_span:.3g}" in out
    assert "1 critical" in out and "none" in out


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_enabled_only_for_a_terminal_and_not_for_json() -> None:
    """Bars are on for a TTY with text output, off for pipes and for JSON."""
    assert progress_enabled("text", _Tty()) is True
    assert progress_enabled("json", _Tty()) is False
    assert progress_enabled("text", io.StringIO()) is False


def test_progress_is_silent_when_stdout_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Under pytest stdout is captured (not a TTY): track yields every item and prints nothing."""
    items = list(track(range(5), "work"))
    with progress("more work", total=2) as bar:
        bar.advance()
        assert not bar.active
    assert items == [0, 1, 2, 3, 4]
    assert capsys.readouterr().out == ""


def test_progress_draws_when_enabled() -> None:
    """Forced on with a terminal console, the bar shows its description and count."""
    buf = _Tty()
    con = Console(file=buf, force_terminal=True, width=100, color_system=None)
    seen = list(track(["a", "b", "c"], "training runs", enabled=True, console=con))
    assert seen == ["a", "b", "c"]
    assert "training runs" in buf.getvalue() and "3/3" in buf.getvalue()


def _print(findings: list[Finding], **kwargs: object) -> str:
    buf = io.StringIO()
    print_findings(findings, Console(file=buf, width=80, color_system=None), **kwargs)  # type: ignore[arg-type]
    return buf.getvalue()


def test_print_findings_in_a_pipe_is_plain_blocks_most_severe_first() -> None:
    """Off a terminal each finding is a plain block: severity, rule, steps and layers, the
    message, then the first three remedies with their reasons; markup prints literally."""
    info = _finding("loss_plateau", "info")
    crit = Finding("dead_units", "critical", ("[bold]x[/bold]",), None, {}, "m [red]y[/red]",
                   tuple(RemedyHint(r, f"why {r}") for r in ("relu", "init_he", "lstm", "gru")))  # fmt: skip
    out = _print([info, crit], about="2 layers, 10 steps")
    assert out.splitlines()[:7] == [
        "2 finding(s) (2 layers, 10 steps), most severe first:",
        "",
        "CRITICAL dead_units  (whole run; [bold]x[/bold])",
        "  m [red]y[/red]",
        "  Try:",
        "    1. relu: why relu",
        "    2. init_he: why init_he",
    ]
    assert "lstm" in out and "gru" not in out
    assert "INFO loss_plateau  (steps 3-9; net.0)" in out
    assert "┃" not in out


def test_print_findings_brief_is_one_line_each() -> None:
    """brief prints `[severity] rule: message` per finding, indented, most severe first."""
    out = _print([_finding("loss_plateau", "info"), _finding("x", "warning")], brief=True, indent=2)
    assert out.splitlines() == [
        "  [warning] x: x happened",
        "  [info] loss_plateau: loss_plateau happened",
    ]


def test_print_findings_on_a_terminal_is_the_table() -> None:
    """A terminal console gets the findings table, headed by what was diagnosed."""
    buf = _Tty()
    con = Console(file=buf, force_terminal=True, width=160, color_system=None)
    print_findings([_finding("dead_units", "warning")], con, about="3 layers")
    out = buf.getvalue()
    assert "1 finding(s) (3 layers)" in out and "try first" in out and "1. residual" in out


def test_print_findings_without_rich_prints_plain_text(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With rich not importable the plain form goes to stdout through print."""
    import builtins

    real_import = builtins.__import__

    def no_rich(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("rich"):
            raise ImportError("no rich")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_rich)
    print_findings([_finding("dead_units", "warning")])
    print_findings([], about="1 layers, 2 steps")
    out = capsys.readouterr().out
    assert "WARNING dead_units  (steps 3-9; net.0)" in out and "    1. residual: r" in out
    assert "No findings (1 layers, 2 steps): the diagnosis rules all stayed quiet." in out


def test_progress_bars_share_one_display_and_print_above() -> None:
    """bar() adds a bar to the same display; print() writes above it; both off when disabled."""
    buf = _Tty()
    con = Console(file=buf, force_terminal=True, width=100, color_system=None)
    with progress(None, enabled=True, console=con) as bars:
        first, second = bars.bar("run a", 4), bars.bar("run b", 2)
        first.update(completed=4)
        second.advance(2)
        bars.print("[bold]literal[/bold]")
        assert bars.console is con
    out = buf.getvalue()
    assert "run a" in out and "4/4" in out and "run b" in out and "2/2" in out
    assert "[bold]literal[/bold]" in out
    with progress(None, enabled=False) as off:
        assert off.console is None and not off.bar("x", 1).active


def test_a_nested_progress_joins_the_drawing_display() -> None:
    """A library call's bar inside a command's bar joins that display (rich allows one live
    display at a time) without being asked, and a transient one leaves when done."""
    from gradwatch.report.console import _ACTIVE

    buf = _Tty()
    con = Console(file=buf, force_terminal=True, width=120, color_system=None)
    with progress("studies", 2, enabled=True, console=con) as outer:
        display = _ACTIVE.get()
        assert display is not None
        with progress("seeds", 3, transient=True) as inner:  # enabled=None: joins
            assert inner.active and inner.console is con
            for _ in range(3):
                inner.advance()
            assert len(display.tasks) == 2
        assert len(display.tasks) == 1  # the transient bar left
        with progress("kept", 1) as kept:
            kept.advance()
        assert len(display.tasks) == 2
        outer.advance(2)
    assert _ACTIVE.get() is None
    out = buf.getvalue()
    assert "studies" in out and "2/2" in out and "kept" in out and "1/1" in out


def test_progress_shows_count_and_time_left() -> None:
    """Each bar shows N/M done, the elapsed time and the estimated time left (h:mm:ss)."""
    import re

    buf = _Tty()
    con = Console(file=buf, force_terminal=True, width=120, color_system=None)
    with progress("verify relu", 10, enabled=True, console=con) as bar:
        on_step = bar.step_callback(offset=5, label="verify relu: with the remedy")
        on_step(3, 5)
        con.file.flush()
        bar._progress.refresh()  # type: ignore[union-attr]
        snapshot = buf.getvalue()
    assert "8/10" in snapshot and "verify relu: with the remedy" in snapshot
    # elapsed and remaining columns: two h:mm:ss clocks (or -:--:-- before an estimate)
    assert len(re.findall(r"\d:\d\d:\d\d|-:--:--", snapshot)) >= 2


def test_json_output_never_joins_a_display() -> None:
    """output_format='json' stays silent even inside a drawing display."""
    buf = _Tty()
    con = Console(file=buf, force_terminal=True, width=120, color_system=None)
    with (
        progress("outer", 1, enabled=True, console=con),
        progress("inner", 1, output_format="json") as inner,
    ):
        assert not inner.active


def test_work_inside_a_switched_off_display_stays_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a JSON command's (switched-off) progress, a library bar stays off even on a
    terminal; outside any display it would draw."""
    from gradwatch.report import console

    monkeypatch.setattr(console, "progress_enabled", lambda *a, **k: True)  # "a terminal"
    buf = _Tty()
    con = Console(file=buf, force_terminal=True, width=120, color_system=None)
    with progress("studies", 1, output_format="json") as outer:
        assert not outer.active
        with progress("seeds", 3, console=con) as inner:
            assert not inner.active
    with progress("seeds", 3, console=con) as alone:
        assert alone.active
    assert console._ACTIVE.get() is None
