"""The HTML report: one self-contained file with the verdict, findings, plots and run details.

Everything is inline: PNGs as base64 ``data:`` URIs, CSS in a ``<style>`` element, no script
at all, and a Content-Security-Policy that forbids any network fetch, so the file opens the
same offline, from an e-mail or from a CI artifact. jinja2 renders it with auto-escaping on:
a layer or run named ``<script>...</script>`` is shown as text.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gradwatch.diagnosis import Finding
from gradwatch.trace import Trace

from ._style import INSTALL_HINT
from .html_sections import (
    HOW_TO_READ,
    IMAGE_SIZE,
    MAX_RECURRENT_PLOTS,
    Predicted,
    RunView,
    comparison,
    run_view,
)
from .summary import RemedyChoice, run_diagnosis

__all__ = ["HOW_TO_READ", "MAX_RECURRENT_PLOTS", "render_report", "write_report"]

RunLike = Trace | str | os.PathLike[str]
#: Above this many runs the page opens with one table row per run instead of a verdict card
#: each (ten cards would push the comparison off the first screen).
COMPACT_AFTER = 4
#: One run's findings; several runs' (None = that run was not diagnosed); or label -> findings.
FindingsArg = (
    Sequence[Finding] | Sequence[Sequence[Finding] | None] | Mapping[str, Sequence[Finding]]
)


# ---------------------------------------------------------------------- inputs
def _as_runs(runs: RunLike | Sequence[RunLike]) -> list[RunLike]:
    if isinstance(runs, (Trace, str, os.PathLike)):
        return [runs]
    out = list(runs)
    if not out:
        raise ValueError(
            "Expected argument `runs` to name at least one run directory or Trace but it is empty."
        )
    return out


def _load(run: RunLike) -> Trace:
    if isinstance(run, Trace):
        return run
    if isinstance(run, (str, os.PathLike)):
        from gradwatch.trace import load

        return load(run)
    raise TypeError(
        f"Expected each run to be a Trace or a run directory path but got "
        f"{type(run).__name__}: {run!r}."
    )


def _unique_labels(traces: Sequence[Trace], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != len(traces):
            raise ValueError(
                f"Expected one label per run but got {len(labels)} labels for {len(traces)} runs."
            )
        base = [str(s) for s in labels]
    else:
        base = [
            t.run_dir.name if t.run_dir is not None else str(t.meta.get("name", f"run {i + 1}"))
            for i, t in enumerate(traces)
        ]
    seen: dict[str, int] = {}
    out = []
    for b in base:
        seen[b] = seen.get(b, 0) + 1
        out.append(b if seen[b] == 1 else f"{b} ({seen[b]})")
    return out


def _findings_per_run(
    traces: Sequence[Trace],
    labels: Sequence[str],
    findings: FindingsArg | None,
) -> list[list[Finding] | None]:
    """Normalise ``findings`` to one list per run; diagnose when none were given."""
    if findings is None:
        return [run_diagnosis(t) for t in traces]
    if isinstance(findings, Mapping):
        unknown = sorted(set(findings) - set(labels))
        if unknown:
            raise ValueError(
                f"argument `findings` names runs {unknown} that are not in this report; the "
                f"runs are {list(labels)}."
            )
        per_run: list[list[Finding] | None] = [
            list(findings[lab]) if lab in findings else [] for lab in labels
        ]
    else:
        items: list[Any] = list(findings)
        if all(isinstance(f, Finding) for f in items):
            if len(traces) != 1:
                raise ValueError(
                    f"argument `findings` is one flat list but the report has {len(traces)} "
                    "runs; pass one list per run (or a dict run label -> findings)."
                )
            per_run = [list(items)]
        else:
            if len(items) != len(traces):
                raise ValueError(
                    f"Expected argument `findings` to hold one list per run ({len(traces)}) but "
                    f"it holds {len(items)}."
                )
            per_run = [None if f is None else list(f) for f in items]
    for run_findings in per_run:
        for f in run_findings or []:
            if not isinstance(f, Finding):
                raise TypeError(
                    f"Expected findings to be gradwatch Finding objects but got "
                    f"{type(f).__name__}: {f!r}."
                )
    return per_run


def _predicted_per_run(
    n: int, predicted: Predicted | Sequence[Predicted | None] | None
) -> list[Predicted | None]:
    if predicted is None:
        return [None] * n
    if n == 1:
        return [predicted]  # type: ignore[list-item]
    if not isinstance(predicted, (list, tuple)) or len(predicted) != n:
        raise ValueError(
            f"Expected argument `predicted` to be a list with one entry (a profile, a chi_1 "
            f"or None) per run ({n} runs) but got {type(predicted).__name__}"
            f"{f' of length {len(predicted)}' if isinstance(predicted, (list, tuple)) else ''}."
        )
    return list(predicted)


# ---------------------------------------------------------------------- rendering
def render_report(
    runs: RunLike | Sequence[RunLike],
    findings: FindingsArg | None = None,
    title: str | None = None,
    *,
    labels: Sequence[str] | None = None,
    predicted: Predicted | Sequence[Predicted | None] | None = None,
    remedies: Mapping[str, Sequence[RemedyChoice]] | None = None,
    failed: Mapping[str, Mapping[str, str]] | None = None,
    progress: bool | None = None,
) -> str:
    """The report as an HTML string (see :func:`write_report` for the arguments).

    Example:
        >>> html = render_report(trace)  # doctest: +SKIP
        >>> html.startswith("<!DOCTYPE html>")  # doctest: +SKIP
        True
    """
    try:
        import jinja2
    except ImportError as exc:
        raise ImportError(
            f"gradwatch's HTML report needs jinja2, which is not installed. Install it with "
            f"`{INSTALL_HINT}`."
        ) from exc
    from gradwatch._version import __version__

    traces = [_load(r) for r in _as_runs(runs)]
    names = _unique_labels(traces, labels)
    per_run = _findings_per_run(traces, names, findings)
    preds = _predicted_per_run(len(traces), predicted)
    for arg, given in (("remedies", remedies), ("failed", failed)):
        unknown = sorted(set(given or {}) - set(names))
        if unknown:
            raise ValueError(
                f"`{arg}` names run(s) {unknown} that are not in the report; its keys must be "
                f"run labels, one of {names}."
            )
    from .console import progress as progress_bar

    # Several runs take seconds each (their plots); show N/M and the time left to a person.
    show = progress if progress is not None else (None if len(traces) > 1 else False)
    views: list[RunView] = []
    with progress_bar("report", len(traces), enabled=show, transient=True) as bar:
        for i, (t, lab, f, p) in enumerate(zip(traces, names, per_run, preds, strict=True)):
            bar.update(description=f"report: {lab}")
            advice = ((remedies or {}).get(lab), (failed or {}).get(lab))
            views.append(run_view(i, t, lab, f, p, advice=advice))
            bar.advance()
        compared = comparison(traces, names) if len(traces) > 1 else []
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gradwatch.report", "templates"),
        autoescape=True,  # every {{ }} is HTML-escaped: names and messages are user data
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = env.get_template("report.html")
    if title is None:
        title = (
            f"gradwatch report: {names[0]}"
            if len(names) == 1
            else (f"gradwatch report: {len(names)} runs compared")
        )
    return template.render(
        title=title,
        runs=views,
        comparison=compared,
        version=__version__,
        img_size=IMAGE_SIZE,
        compact_after=COMPACT_AFTER,
    )


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory + ``os.replace``.

    ``os.replace`` swaps the directory entry itself: when ``path`` is a symlink, the link is
    replaced and its target is left alone, so nothing outside ``path`` is ever written.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o644)  # mkstemp makes 0600; a report is meant to be shared
        tmp.replace(path)  # os.replace: atomic, and swaps a symlink itself, not its target
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_report(
    runs: RunLike | Sequence[RunLike],
    out_path: str | os.PathLike[str],
    findings: FindingsArg | None = None,
    title: str | None = None,
    *,
    labels: Sequence[str] | None = None,
    predicted: Predicted | Sequence[Predicted | None] | None = None,
    remedies: Mapping[str, Sequence[RemedyChoice]] | None = None,
    failed: Mapping[str, Mapping[str, str]] | None = None,
    progress: bool | None = None,
) -> Path:
    """Write a self-contained HTML report of one or several runs.

    Args:
        runs: A run directory or Trace, or a list of them (several runs get a comparison
            section).
        out_path: The HTML file to write. Its directory must exist; the file is replaced
            atomically and nothing else is written.
        findings: Findings of the run (one run), one list per run, or a dict run label ->
            findings. ``None``: run ``gradwatch.diagnosis.diagnose`` on each run. In a list
            of lists, ``None`` marks a run that was not diagnosed.
        title: Page title; by default it names the run(s).
        labels: One name per run; the run directories' names by default.
        predicted: A theory prediction to overlay on the measured depth profile: one value
            per layer, or a single ``chi_1`` (see :func:`gradwatch.report.plots.chi1_profile`);
            for several runs, a list with one entry (or None) per run.
        remedies: Run label -> remedies ranked by the caller, who knows what the report
            cannot: ``gw.prescribe(findings, model)`` keeps only those that fit the model.
            The verdict's "first thing to try" is the first of them. By default the one
            ranking checked against the recorded layer table.
        failed: Run label -> {remedy id: what was measured}, for remedies the caller's own
            runs measured as failing: never recommended first, and the verdict says why.
        progress: Show a progress bar (runs done of all, time left) while the runs are
            drawn. ``None``: for several runs, when stdout is a terminal.

    Returns:
        The path written.

    Raises:
        FileNotFoundError: When ``out_path``'s directory does not exist.
        ValueError: When ``out_path`` is a directory, or the arguments do not match the runs.
        TraceError: When a run directory cannot be read.

    Example:
        >>> import gradwatch as gw
        >>> gw.write_report("runs/exp1", "exp1.html")  # doctest: +SKIP
        PosixPath('exp1.html')
    """
    path = Path(out_path)
    if path.is_dir():
        raise ValueError(
            f"Expected argument `out_path` to be a file but {str(path)!r} is a directory; pass "
            "e.g. report.html inside it."
        )
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"the directory of `out_path` {str(path.parent)!r} does not exist; create it first "
            "(gradwatch writes only the report file itself)."
        )
    html = render_report(
        runs,
        findings,
        title,
        labels=labels,
        predicted=predicted,
        remedies=remedies,
        failed=failed,
        progress=progress,
    )
    _atomic_write_text(path, html)
    return path
