"""Console views: the one findings printer, run comparisons, and the one progress helper.

Every command that shows findings prints them with :func:`print_findings`: a rich table on a
terminal, plain text in pipes and logs (and without rich). User data (layer names, messages)
goes out as :class:`rich.text.Text`, never as markup, so a layer named ``[bold]x[/bold]``
prints as written. Progress bars (:func:`progress`, :func:`track`) draw only when a person is
watching: stdout is a terminal and the output format is not JSON. Each shows what it counts,
``N/M`` done, the time so far and the estimated time left. A bar opened while another
display is drawing (a library call inside a CLI command's bar) joins that display as one
more line: rich draws one live display at a time.

Example:
    >>> from gradwatch.report.console import print_findings, track
    >>> print_findings(findings)  # doctest: +SKIP
    >>> for run in track(runs, "training runs"):  # doctest: +SKIP
    ...     train(run)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, TYPE_CHECKING, Any, TypeVar

from gradwatch.diagnosis import SEVERITY_RANK, Finding
from gradwatch.diagnosis.ranking import fitting_hints

from .summary import RunSummary

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from gradwatch.trace import Trace

__all__ = [
    "ProgressHandle",
    "comparison_table",
    "findings_table",
    "print_comparison",
    "print_findings",
    "progress",
    "progress_enabled",
    "track",
]

T = TypeVar("T")

#: Severity styles: colour plus a word, so the table also reads without colour.
_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "blue"}

#: The progress display being drawn in this context, if any (nested bars join it), or
#: :data:`_OFF` inside a switched-off one (nested bars stay off: e.g. a JSON command).
_ACTIVE: ContextVar[Any] = ContextVar("gradwatch_progress", default=None)
_OFF = object()

#: The all-clear, after "No findings" and what was diagnosed.
_ALL_CLEAR = ": the diagnosis rules all stayed quiet."


def _rich() -> None:
    try:
        import rich  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "gradwatch's console tables need rich, which is not installed. Install it with "
            '`pip install "gradwatch[report]"`.'
        ) from exc


def findings_table(
    findings: Sequence[Finding], *, title: str | None = "Findings", trace: Trace | None = None
) -> Table:
    """A rich table of findings, most severe first, with the top-ranked remedies (less those
    ``trace``'s layer table rules out, e.g. residual for a model that has them).

    Example:
        >>> from rich.console import Console
        >>> Console().print(findings_table(findings))  # doctest: +SKIP
    """
    _rich()
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_lines=True, expand=False)
    table.add_column("severity", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("what is wrong")
    table.add_column("layers")
    table.add_column("steps", no_wrap=True)
    table.add_column("try first")
    for f in sorted(findings, key=lambda f: -SEVERITY_RANK.get(f.severity, 0)):
        layers = ", ".join(f.shown_layers[:4])
        if len(f.layers) > 4:
            layers += f" (+{len(f.layers) - 4} more)"
        steps = f"{f.steps[0]}–{f.steps[1]}" if f.steps is not None else "all"
        hints = fitting_hints(f, trace)
        remedies = "\n".join(f"{i + 1}. {r.id}" for i, r in enumerate(hints[:3]))
        table.add_row(
            Text(f.severity, style=_SEVERITY_STYLE.get(f.severity, "")),
            Text(f.rule),
            Text(f.message),
            Text(layers),
            Text(steps),
            Text(remedies),
        )
    return table


def _num(x: float | None, fmt: str = ".4g") -> str:
    return "–" if x is None else format(x, fmt)


def comparison_table(summaries: Sequence[RunSummary], *, title: str | None = "Runs") -> Table:
    """A rich table comparing runs: loss, gradient span from first to last layer, findings.

    Example:
        >>> from gradwatch.report import summarize
        >>> rows = [summarize(t, diagnose(t), name) for name, t in runs.items()]  # doctest: +SKIP
        >>> Console().print(comparison_table(rows))  # doctest: +SKIP
    """
    _rich()
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    table.add_column("run", overflow="fold", min_width=8)
    table.add_column("layers", justify="right")
    table.add_column("steps", justify="right")
    table.add_column("loss (final)", justify="right")
    table.add_column("loss (best)", justify="right")
    table.add_column("grad RMS first/last (median over steps)", justify="right")
    table.add_column("findings")
    for s in summaries:
        if not s.diagnosed:
            counts = Text("not diagnosed", style="dim")
        elif not s.counts:
            counts = Text("none", style="green")
        else:
            counts = Text(", ").join(
                Text(f"{s.counts[sev]} {sev}", style=_SEVERITY_STYLE[sev])
                for sev in ("critical", "warning", "info")
                if s.counts.get(sev)
            )
        table.add_row(
            Text(s.label),
            str(s.n_layers),
            str(s.n_steps),
            _num(s.final_loss),
            _num(s.best_loss),
            _num(s.grad_span, ".3g"),
            counts,
        )
    return table


def _console(console: Console | None) -> Console:
    _rich()
    from rich.console import Console

    return console if console is not None else Console()


def _console_if_rich(console: Console | None) -> Console | None:
    """``console``, else a stdout console when rich is installed, else None (plain print)."""
    if console is not None:
        return console
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(highlight=False)


def _line(console: Console | None, *parts: tuple[str, str]) -> None:
    """One line of ``(text, style)`` parts; user text stays literal (a Text, never markup)."""
    if console is None:
        print("".join(text for text, _ in parts), flush=True)
        return
    from rich.text import Text

    console.print(Text.assemble(*parts), soft_wrap=True)


def print_findings(
    findings: Sequence[Finding],
    console: Console | None = None,
    *,
    about: str | None = None,
    brief: bool = False,
    indent: int = 0,
    trace: Trace | None = None,
) -> None:
    """Print findings for a person, most severe first, or a one-line all-clear.

    On a terminal the full form is the findings table; anywhere else (a pipe, a log, a
    console that is not a terminal, or no rich installed) it is plain text, one block per
    finding: severity and rule with its steps and layers, the message, the first remedies
    with their reasons. ``brief`` prints one ``[severity] rule: message`` line per finding,
    for callers that list remedies themselves. Layer names and messages print as written.

    Args:
        findings: What ``gw.diagnose`` returned.
        console: The rich console to print on; stdout by default.
        about: What was diagnosed, e.g. ``"6 layers, 30 steps"``, for the heading.
        brief: One line per finding instead of the table or blocks.
        indent: Spaces before every line (to nest under a caller's heading).
        trace: The diagnosed trace: remedies its layer table rules out are not offered.

    Example:
        >>> print_findings(gw.diagnose(trace), about="6 layers, 30 steps")  # doctest: +SKIP
        1 finding(s) (6 layers, 30 steps), most severe first:
        ...
    """
    con = _console_if_rich(console)
    _print_findings(findings, con, about=about, brief=brief, indent=indent, trace=trace)
    # A Diagnosis's notes: what the loop did wrong that no finding carries.
    for note in getattr(findings, "notes", ()):
        _line(con, (" " * indent, ""), ("Note", "bold yellow"), (f": {note}", ""))


def _print_findings(
    findings: Sequence[Finding],
    con: Console | None,
    *,
    about: str | None,
    brief: bool,
    indent: int,
    trace: Trace | None,
) -> None:
    pad = " " * indent
    ordered = sorted(findings, key=lambda f: -SEVERITY_RANK.get(f.severity, 0))
    if not ordered:
        context = f" ({about})" if about else ""
        _line(con, (pad, ""), ("No findings", "green"), (context, ""), (_ALL_CLEAR, ""))
        return
    if brief:
        for f in ordered:
            style = _SEVERITY_STYLE.get(f.severity, "")
            _line(con, (pad, ""), (f"[{f.severity}]", style), (f" {f.rule}: {f.message}", ""))
        return
    if about:
        _line(con, (pad, ""), (f"{len(ordered)} finding(s)", "bold"), (f" ({about})", ""),
              (", most severe first:", ""))  # fmt: skip
    if con is not None and con.is_terminal:
        con.print(findings_table(ordered, title=None if about else "Findings", trace=trace))
        return
    if about:
        _line(con)
    for f in ordered:
        where = ", ".join(f.shown_layers[:4]) + (" ..." if len(f.layers) > 4 else "")
        steps = f"steps {f.steps[0]}-{f.steps[1]}" if f.steps else "whole run"
        style = _SEVERITY_STYLE.get(f.severity, "")
        _line(con, (pad, ""), (f.severity.upper(), style), (" ", ""), (f.rule, "bold"),
              (f"  ({steps}{'; ' + where if where else ''})", ""))  # fmt: skip
        _line(con, (f"{pad}  {f.message}", ""))
        hints = fitting_hints(f, trace)
        if hints:
            _line(con, (f"{pad}  Try:", ""))
            for i, r in enumerate(hints[:3], 1):
                _line(con, (f"{pad}    {i}. ", ""), (r.id, "bold"), (f": {r.reason}", ""))
        _line(con)


def print_comparison(summaries: Sequence[RunSummary], console: Console | None = None) -> None:
    """Print a run comparison table to ``console`` (stdout by default)."""
    _console(console).print(comparison_table(summaries))


# ---------------------------------------------------------------------- progress
def progress_enabled(output_format: str = "human", stream: IO[str] | None = None) -> bool:
    """Whether to draw progress bars: only for a person at a terminal, never for JSON output."""
    if output_format == "json":
        return False
    out = sys.stdout if stream is None else stream
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


class ProgressHandle:
    """One bar of a progress display; every method is a no-op when progress is switched off."""

    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self._progress = progress
        self._task = task

    @property
    def active(self) -> bool:
        """Whether bars are being drawn."""
        return self._progress is not None

    @property
    def console(self) -> Console | None:
        """The console the bars draw on (print there to print above them), or None when off."""
        return None if self._progress is None else self._progress.console

    def advance(self, n: float = 1) -> None:
        """Move this bar ``n`` units on."""
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def update(
        self,
        *,
        completed: float | None = None,
        description: str | None = None,
        total: float | None = None,
    ) -> None:
        """Set this bar's position, description or total (those given)."""
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, completed=completed, description=description, total=total
            )

    def step_callback(
        self, offset: float = 0, label: str | None = None
    ) -> Callable[[int, int], None]:
        """A ``progress(step, steps)`` callback (the lab's training loops call one) that
        moves this bar to ``offset + step``; ``label`` replaces the description on the way.

        Example:
            >>> with progress("verify", total=200) as bar:  # doctest: +SKIP
            ...     train(..., progress=bar.step_callback(100, "with the remedy"))
        """
        if label is not None:
            self.update(description=label)

        def on_step(step: int, steps: int) -> None:
            self.update(completed=offset + step)

        return on_step

    def bar(self, description: str, total: float | None = None) -> ProgressHandle:
        """Another bar on the same display, e.g. one per training run of a demo."""
        if self._progress is None:
            return ProgressHandle()
        return ProgressHandle(self._progress, self._progress.add_task(description, total=total))

    def print(self, text: str) -> None:
        """Print a line of plain text above the bars (or to stdout when progress is off)."""
        if self._progress is None:
            print(text, flush=True)
            return
        from rich.text import Text

        self._progress.console.print(Text(text), soft_wrap=True)


@contextmanager
def progress(
    description: str | None,
    total: float | None = None,
    *,
    output_format: str = "human",
    enabled: bool | None = None,
    console: Console | None = None,
    transient: bool = False,
) -> Iterator[ProgressHandle]:
    """A progress display for long work (lab runs, sweeps, studies, demos, reports of several
    runs), off when nobody watches: drawn only when stdout is a terminal and the output
    format is not JSON. It shows ``N/M`` units done, the time elapsed and the time left.

    Inside another display (a CLI command's bar around a library call that has its own), the
    bar is added to that display instead of starting a second one; inside a switched-off
    one (a command writing JSON), it stays off unless ``enabled=True``.

    Args:
        description: What is progressing, e.g. ``"training runs"``; None starts the display
            with no bar (add bars with :meth:`ProgressHandle.bar`).
        total: Number of units of work, or ``None`` when unknown.
        output_format: ``"json"`` switches progress off (machine output).
        enabled: Force on or off; by default on only when stdout is a terminal (or, inside
            another display, when that display is drawing).
        console: The rich console to draw on; stdout by default.
        transient: Remove the bar when the work is done (a library call's bar inside a
            command's output), instead of leaving it on the screen.

    Example:
        >>> with progress("runs", total=len(runs)) as bar:  # doctest: +SKIP
        ...     for run in runs:
        ...         train(run)
        ...         bar.advance()
    """
    active = _ACTIVE.get()
    if enabled is None:
        on = (
            output_format != "json"
            and active is not _OFF
            and (active is not None or progress_enabled(output_format))
        )
    else:
        on = enabled
    if not on:
        # Work inside stays silent too: a library call's bar under a JSON command.
        off = _ACTIVE.set(_OFF)
        try:
            yield ProgressHandle()
        finally:
            _ACTIVE.reset(off)
        return
    if active is not None and active is not _OFF:
        task = active.add_task(description or "", total=total)
        try:
            yield ProgressHandle(active, task)
        finally:
            if transient:
                active.remove_task(task)
        return
    _rich()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("{task.description}", markup=False),  # names are user text, not markup
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )
    token = _ACTIVE.set(bar)
    try:
        with bar:
            task = bar.add_task(description, total=total) if description is not None else None
            yield ProgressHandle(bar, task)
    finally:
        _ACTIVE.reset(token)


def track(
    items: Iterable[T],
    description: str,
    *,
    total: float | None = None,
    output_format: str = "human",
    enabled: bool | None = None,
    console: Console | None = None,
    transient: bool = False,
) -> Iterator[T]:
    """Iterate ``items`` with a progress bar (see :func:`progress`); yields the items as-is.

    Example:
        >>> for cfg in track(configs, "sweep"):  # doctest: +SKIP
        ...     run(cfg)
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress(
        description,
        total,
        output_format=output_format,
        enabled=enabled,
        console=console,
        transient=transient,
    ) as bar:
        for item in items:
            yield item
            bar.advance()
