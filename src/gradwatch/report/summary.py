"""One row of numbers and a plain-words verdict per run, shared by the HTML and console views."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gradwatch import diagnosis
from gradwatch.diagnosis import SEVERITY_RANK, DepthTrend, Finding, depth_trend, rank_remedies
from gradwatch.diagnosis.loop_mistakes import loop_notes
from gradwatch.trace import Trace

__all__ = ["RemedyChoice", "RunSummary", "recording_cost", "run_diagnosis", "summarize", "verdict"]


class RemedyChoice(Protocol):
    """A ranked remedy as the verdict reads it: ``gw.prescribe``'s ``Prescription`` or the
    ranking's ``RankedRemedy`` (anything with a ``remedy`` id and a ``reason``)."""

    @property
    def remedy(self) -> str: ...

    @property
    def reason(self) -> str: ...


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
        grad_span: ``grad_rms`` of the first layer divided by that of the last layer, the
            median over the steps where both were measured (1 = even flow; 1e-6 = six orders
            of magnitude lost on the way back), or ``None`` when not measurable: the value of
            ``trace.grad_ratio("median")``, the one first/last ratio the demo, the lab and
            the report quote.
        span_step: The last step of the window ``grad_span`` covers.
        span_label: Where ``grad_span`` comes from, e.g. ``"median over steps 0-299"``.
        trend: The depth trend of the gradient over the hidden layers (the verdict's flow
            sentence), or ``None`` when not measurable.
        remedies: The findings' remedies in the one ranking (``gw.prescribe``'s, checked
            against the layer table), those that fit first.
        counts: Number of findings per severity (empty when the diagnosis did not run).
        top: The most severe finding's message, or ``None``.
        diagnosed: Whether findings were available for this run.
        notes: What the training loop did wrong that no finding carries (the diagnosis's
            ``notes``: a model trained in eval mode with no rule at warning or above).
    """

    label: str
    n_layers: int
    n_steps: int
    last_step: int | None
    final_loss: float | None
    best_loss: float | None
    grad_span: float | None
    span_step: int | None
    span_label: str | None
    trend: DepthTrend | None
    remedies: tuple[diagnosis.RankedRemedy, ...]
    counts: dict[str, int]
    top: str | None
    diagnosed: bool
    notes: tuple[str, ...] = ()


def summarize(trace: Trace, findings: Sequence[Finding] | None, label: str) -> RunSummary:
    """Headline numbers of ``trace`` (and its findings, when the diagnosis ran).

    Example:
        >>> from gradwatch.trace import Trace
        >>> t = Trace.from_arrays(["fc0", "fc1"], [0, 1], {"grad_rms": [[1e-3, 1.0]] * 2},
        ...                       scalars={"loss": [2.3, 1.9]})
        >>> s = summarize(t, None, "baseline")
        >>> s.grad_span, s.span_label, s.final_loss  # first/last layer's gradient RMS
        (0.001, 'median over steps 0-1', 1.9)
    """
    final = best = None
    if trace.has_scalar("loss"):
        loss = trace.scalar("loss")
        finite = loss[np.isfinite(loss)]
        if len(finite):
            final, best = float(finite[-1]), float(finite.min())
    # the one first/last ratio, the median over the run (as the demo's and the lab's tables)
    ratio = trace.grad_ratio("median")
    span = None if ratio.steps is None or not math.isfinite(ratio.value) else ratio.value
    span_step = None if span is None or ratio.steps is None else ratio.steps[1]
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
        span_label=ratio.label if span is not None else None,
        trend=depth_trend(trace),
        remedies=tuple(rank_remedies(findings, trace=trace)) if findings else (),
        counts=counts,
        top=top,
        diagnosed=findings is not None,
        notes=_notes(findings, trace),
    )


def _notes(findings: Sequence[Finding] | None, trace: Trace) -> tuple[str, ...]:
    # Recomputed from the trace: the report holds the findings as a plain list.
    if findings is None:
        return ()
    return loop_notes(findings, trace)


def recording_cost(trace: Trace) -> str | None:
    """What recording cost the run, as measured by its overhead budget, in one line.

    None for a run recorded with the fixed spacing (``overhead=None``) or before the budget
    existed.

    Example:
        >>> recording_cost(trace)  # doctest: +SKIP
        'recording cost 2.4% of step time (budget 3%), sampled every 40 steps; a sampled step
        adds 9.6 ms to a 35 ms step'
    """
    config = trace.config
    budget, schedule = config.get("overhead"), config.get("schedule")
    if not isinstance(budget, (int, float)) or not isinstance(schedule, Mapping):
        return None
    share = schedule.get("measured_share")
    spacing = schedule.get("sample_spacing")
    plain = schedule.get("record_spacing", 1)
    if not isinstance(share, (int, float)) or not isinstance(spacing, int):
        dense = config.get("dense_steps", 0)
        return (
            f"recording cost not measured (the run ended within its dense start of {dense} "
            f"sampled steps; budget {100 * budget:.3g}%)"
        )
    line = (
        f"recording cost {100 * share:.2g}% of step time (budget {100 * budget:.3g}%), "
        f"sampled every {spacing} steps"
    )
    if isinstance(plain, int) and plain > 1:
        line += f", gradient statistics every {plain} steps"
    cost = schedule.get("cost_ms")
    if isinstance(cost, Mapping):
        sampled, user = cost.get("sampled"), cost.get("user_step")
        if isinstance(sampled, (int, float)) and isinstance(user, (int, float)) and user > 0:
            # What sampling every step would cost: the number behind the spacing.
            line += f"; a sampled step adds {sampled:.3g} ms to a {user:.3g} ms step"
            indirect = cost.get("sampled_indirect")
            if isinstance(indirect, (int, float)) and indirect > 0:
                line += f" ({indirect:.2g} ms of it in the model's own forward and backward)"
    return line


def _trend_sentence(s: RunSummary) -> str | None:
    """The gradient flow through depth in words: the fitted trend over the hidden layers."""
    t = s.trend
    if t is None or not math.isfinite(t.decades):
        return None
    over = (
        f"over the {t.n_layers} hidden weight layers ({t.first} … {t.last})"
        if t.hidden
        else f"over the {t.n_layers} weight layers ({t.first} … {t.last})"
    )
    fit = f"least-squares trend of log gradient RMS along depth, {t.label}"
    if abs(t.decades) < 1:
        return (
            f"Gradients flow evenly through depth: {over}, gradient RMS changes by "
            f"{1 / t.factor:.2g}× from the last back to the first ({fit})."
        )
    if t.decades > 0:
        return (
            f"The gradient vanishes toward the input: {over}, gradient RMS falls "
            f"{t.factor:.2g}× ({t.decades:.1f} orders of magnitude) from the last back to the "
            f"first ({fit})."
        )
    return (
        f"The gradient grows toward the input: {over}, gradient RMS rises {1 / t.factor:.2g}× "
        f"({-t.decades:.1f} orders of magnitude) from the last back to the first ({fit})."
    )


def _span_sentence(s: RunSummary) -> str | None:
    if s.grad_span is None or s.grad_span <= 0 or s.n_layers < 2:
        return None
    return (
        f"First/last layer gradient RMS ratio: {s.grad_span:.2g} ({s.span_label}, "
        f"{s.n_layers} layers)."
    )


def verdict(
    summary: RunSummary,
    findings: Sequence[Finding] | None,
    *,
    remedies: Sequence[RemedyChoice] | None = None,
    failed: Mapping[str, str] | None = None,
) -> list[str]:
    """A plain-words verdict: the worst finding, the first remedy, the gradient flow.

    The first remedy is the first of the one ranking (``gw.prescribe``'s): by default
    ``summary.remedies`` (checked against the recorded layer table); a caller that has the
    model passes ``remedies=gw.prescribe(findings, model)``, which only keeps what fits it.
    A remedy the caller measured as failing (``failed``: remedy id -> what was measured,
    e.g. ``"vanishing_gradient still critical"``) is never first; the verdict says why.

    Example:
        >>> verdict(summarize(trace, [], "run"), [])  # doctest: +SKIP
        ['No problem found: the diagnosis rules all stayed quiet.', 'Gradients flow evenly ...']
    """
    lines: list[str] = []
    failed = dict(failed or {})
    if findings is None:
        lines.append(
            "The diagnosis did not run (no findings were given for this run), so "
            "this report shows the measurements without a verdict from the rules."
        )
    elif not findings and summary.notes:
        lines.append("No rule fired, but the training loop needs a look:")
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
        choices: Sequence[RemedyChoice] = (
            remedies if remedies is not None else [r for r in summary.remedies if r.applicable]
        )
        first = next((c for c in choices if c.remedy not in failed), None)
        if first is not None:
            lines.append(f"First thing to try: {first.remedy} ({first.reason}).")
        if failed:
            measured = "; ".join(f"{r}: {why}" for r, why in failed.items())
            lines.append(f"Not first, as measured in the compared runs: {measured}.")
    lines += [f"Note: {note}" for note in summary.notes]
    for sentence in (_trend_sentence(summary), _span_sentence(summary)):
        if sentence:
            lines.append(sentence)
    return lines
