"""Console views: rich tables of findings and run comparisons, and a progress helper.

User data (layer names, messages) goes into tables as :class:`rich.text.Text`, never as
markup, so a layer named ``[bold]x[/bold]`` prints as written. Progress bars draw only when
a person is watching: stdout is a terminal and the output format is not JSON.

Example:
    >>> from gradwatch.report.console import print_findings, track
    >>> print_findings(findings)  # doctest: +SKIP
    >>> for run in track(runs, "training runs"):  # doctest: +SKIP
    ...     train(run)
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, TypeVar

from gradwatch.diagnosis import SEVERITY_RANK, Finding

from .summary import RunSummary

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

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


def _rich() -> None:
    try:
        import rich  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "gradwatch's console tables need rich, which is not installed. Install it with "
            '`pip install "gradwatch[report]"`.'
        ) from exc


def findings_table(findings: Sequence[Finding], *, title: str | None = "Findings") -> Table:
    """A rich table of findings, most severe first, with the top-ranked remedies.

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
        layers = ", ".join(s or "(root)" for s in f.layers[:4])
        if len(f.layers) > 4:
            layers += f" (+{len(f.layers) - 4} more)"
        steps = f"{f.steps[0]}–{f.steps[1]}" if f.steps is not None else "all"
        remedies = "\n".join(f"{i + 1}. {r.id}" for i, r in enumerate(f.remedies[:3]))
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
    table.add_column("grad RMS first/last", justify="right")
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


def print_findings(findings: Sequence[Finding], console: Console | None = None) -> None:
    """Print a findings table (or a one-line all-clear) to ``console`` (stdout by default)."""
    con = _console(console)
    if not findings:
        con.print("[green]No problem found:[/green] the diagnosis rules all stayed quiet.")
        return
    con.print(findings_table(findings))


def print_comparison(summaries: Sequence[RunSummary], console: Console | None = None) -> None:
    """Print a run comparison table to ``console`` (stdout by default)."""
    _console(console).print(comparison_table(summaries))


# ---------------------------------------------------------------------- progress
def progress_enabled(output_format: str = "text", stream: IO[str] | None = None) -> bool:
    """Whether to draw progress bars: only for a person at a terminal, never for JSON output."""
    if output_format == "json":
        return False
    out = sys.stdout if stream is None else stream
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


class ProgressHandle:
    """Advance a progress bar; a no-op when progress is switched off."""

    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self._progress = progress
        self._task = task

    @property
    def active(self) -> bool:
        """Whether a bar is being drawn."""
        return self._progress is not None

    def advance(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def update(self, *, description: str | None = None, total: float | None = None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=description, total=total)


@contextmanager
def progress(
    description: str,
    total: float | None = None,
    *,
    output_format: str = "text",
    enabled: bool | None = None,
    console: Console | None = None,
) -> Iterator[ProgressHandle]:
    """A progress bar for long work (lab sweeps, demos, studies), off when nobody watches.

    Args:
        description: What is progressing, e.g. ``"training runs"``.
        total: Number of units of work, or ``None`` when unknown.
        output_format: ``"json"`` switches progress off (machine output).
        enabled: Force on or off; by default on only when stdout is a terminal.
        console: The rich console to draw on; stdout by default.

    Example:
        >>> with progress("runs", total=len(runs)) as bar:  # doctest: +SKIP
        ...     for run in runs:
        ...         train(run)
        ...         bar.advance()
    """
    on = progress_enabled(output_format) if enabled is None else enabled
    if not on:
        yield ProgressHandle()
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
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with bar:
        yield ProgressHandle(bar, bar.add_task(description, total=total))


def track(
    items: Iterable[T],
    description: str,
    *,
    total: float | None = None,
    output_format: str = "text",
    enabled: bool | None = None,
    console: Console | None = None,
) -> Iterator[T]:
    """Iterate ``items`` with a progress bar (see :func:`progress`); yields the items as-is.

    Example:
        >>> for cfg in track(configs, "sweep"):  # doctest: +SKIP
        ...     run(cfg)
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress(
        description, total, output_format=output_format, enabled=enabled, console=console
    ) as bar:
        for item in items:
            yield item
            bar.advance()
