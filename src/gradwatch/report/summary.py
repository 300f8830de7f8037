"""One row of numbers and a plain-words verdict per run, shared by the HTML and console views."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gradwatch import diagnosis
from gradwatch.diagnosis import SEVERITY_RANK, Finding
from gradwatch.trace import Trace

__all__ = ["RunSummary", "run_diagnosis", "summarize", "verdict"]


def run_diagnosis(trace: Trace) -> list[Finding]:
    """The findings of ``trace``: ``gradwatch.diagnosis.diagnose(trace)`` as a list.

    Example:
        >>> findings = run_diagnosis(trace)  # doctest: +SKIP
    """
    # Through the module, so a caller (or a test) that swaps `diagnosis.diagnose` is heard.
    return list(diagnosis.diagnose(trace))


@dataclass(frozen=True)
class RunSummary:
    """Headline numbers of one run.

    Attributes:
        label: The run's name in the report.
        n_layers: Recorded layers.
        n_steps: Steps with per-layer statistics.
        last_step: The last such step (``None`` for an empty trace).
        final_loss: Last finite ``loss`` value, or ``None`` when no loss was logged.
        best_loss: Lowest finite ``loss`` value, or ``None``.
        grad_span: ``grad_rms`` of the first layer divided by that of the last layer at the
            last step where both were measured (1 = even flow; 1e-6 = six orders of magnitude
            lost on the way back), or ``None`` when not measurable: the value of
            ``trace.grad_ratio("last")``, the one first/last ratio every view quotes.
        span_step: The step ``grad_span`` was taken at.
        counts: Number of findings per severity (empty when the diagnosis did not run).
        top: The most severe finding's message, or ``None``.
        diagnosed: Whether findings were available for this run.
    """

    label: str
    n_layers: int
    n_steps: int
    last_step: int | None
    final_loss: float | None
    best_loss: float | None
    grad_span: float | None
    span_step: int | None
    counts: dict[str, int]
    top: str | None
    diagnosed: bool


def summarize(trace: Trace, findings: Sequence[Finding] | None, label: str) -> RunSummary:
    """Headline numbers of ``trace`` (and its findings, when the diagnosis ran).

    Example:
        >>> s = summarize(trace, findings, "baseline")  # doctest: +SKIP
        >>> s.grad_span  # first layer's gradient RMS / last layer's, at the last step
    """
    final = best = None
    if trace.has_scalar("loss"):
        loss = trace.scalar("loss")
        finite = loss[np.isfinite(loss)]
        if len(finite):
            final, best = float(finite[-1]), float(finite.min())
    ratio = trace.grad_ratio("last")  # the one first/last ratio, at its last measured step
    span = None if ratio.steps is None else ratio.value
    span_step = None if ratio.steps is None else ratio.steps[0]
    counts: dict[str, int] = {}
    top = None
    if findings is not None:
        for f in findings:
            counts[f.severity] = counts.get(f.severity, 0) + 1
        ranked = sorted(findings, key=lambda f: -SEVERITY_RANK.get(f.severity, 0))
        top = ranked[0].message if ranked else None
    return RunSummary(
        label=label,
        n_layers=len(trace.layers),
        n_steps=len(trace.steps),
        last_step=int(trace.steps[-1]) if len(trace.steps) else None,
        final_loss=final,
        best_loss=best,
        grad_span=span,
        span_step=span_step,
        counts=counts,
        top=top,
        diagnosed=findings is not None,
    )


def _span_sentence(s: RunSummary) -> str | None:
    if s.grad_span is None or s.grad_span <= 0 or s.n_layers < 2:
        return None
    decades = math.log10(s.grad_span)
    if abs(decades) < 1:
        shape = "within a factor of 10 of each other: gradients flow evenly through depth"
    elif decades < 0:
        shape = f"a fall of {-decades:.1f} orders of magnitude on the way back to the input"
    else:
        shape = f"a rise of {decades:.1f} orders of magnitude on the way back to the input"
    return (
        f"At step {s.span_step}, the first layer's gradient RMS is {s.grad_span:.2g} × the "
        f"last layer's ({shape}, over {s.n_layers} layers)."
    )


def verdict(summary: RunSummary, findings: Sequence[Finding] | None) -> list[str]:
    """A plain-words verdict: the worst finding first, then the measured gradient span.

    Example:
        >>> verdict(summarize(trace, [], "run"), [])  # doctest: +SKIP
        ['No problem found: the diagnosis rules all stayed quiet.', 'At step 99, ...']
    """
    lines: list[str] = []
    if findings is None:
        lines.append(
            "The diagnosis did not run (no findings were given for this run), so "
            "this report shows the measurements without a verdict from the rules."
        )
    elif not findings:
        lines.append("No problem found: the diagnosis rules all stayed quiet.")
    else:
        ranked = sorted(findings, key=lambda f: -SEVERITY_RANK.get(f.severity, 0))
        worst = ranked[0]
        word = {"critical": "Critical problem", "warning": "Warning", "info": "Note"}.get(
            worst.severity, worst.severity
        )
        more = len(ranked) - 1
        tail = f" ({more} more finding{'s' if more != 1 else ''} below.)" if more else ""
        # An em dash, not a colon: rule messages often open with their own "Title: ".
        lines.append(f"{word} — {worst.message}{tail}")
        if worst.remedies:
            lines.append(
                f"First thing to try: {worst.remedies[0].id} ({worst.remedies[0].reason})."
            )
    span = _span_sentence(summary)
    if span:
        lines.append(span)
    return lines
