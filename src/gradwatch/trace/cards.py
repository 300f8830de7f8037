"""Compact HTML cards for Jupyter: the ``_repr_html_`` of traces, findings and diagnoses.

A card needs no matplotlib, no script and no stylesheet: inline styles and an inline SVG
sparkline of the gradient along depth, so it reads the same in JupyterLab, the classic
notebook, VS Code and a notebook rendered on GitHub (which drops ``<style>`` and scripts).
Every piece of user text (layer and run names, messages, evidence) passes through
:func:`esc`: a layer named ``<script>`` shows as text.

This module is the one place those pieces are drawn; ``gradwatch.diagnosis`` builds its
finding and diagnosis cards from them (``trace`` imports nothing of gradwatch).
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .trace import Trace

__all__ = [
    "SEVERITY_COLOURS",
    "DepthProfile",
    "badge",
    "card",
    "depth_profile",
    "esc",
    "run_name",
    "sparkline_svg",
    "trace_card",
]

#: Accent colours by severity; the HTML report's palette (``report/templates/report.html``).
SEVERITY_COLOURS: dict[str, str] = {
    "critical": "#b2182b",
    "warning": "#b35806",
    "info": "#2166ac",
    "ok": "#1a7a4c",
    "unknown": "#5a5a5a",
}
_INK, _MUTED, _LINE = "#1b1b1b", "#5a5a5a", "#d8d8d8"
_FLOW = "#0072B2"  # Okabe-Ito blue, the figures' first colour


def esc(value: object) -> str:
    """``value`` as HTML text: ``<``, ``>``, ``&`` and both quotes escaped."""
    return html.escape(str(value), quote=True)


def badge(text: str, kind: str) -> str:
    """A small coloured label (``kind`` a key of :data:`SEVERITY_COLOURS`)."""
    colour = SEVERITY_COLOURS.get(kind, SEVERITY_COLOURS["unknown"])
    return (
        f'<span style="display:inline-block;background:{colour};color:#fff;border-radius:3px;'
        f"padding:0 5px;font-size:11px;font-weight:700;text-transform:uppercase;"
        f'letter-spacing:.03em;margin-right:6px">{esc(text)}</span>'
    )


def card(title_html: str, body_html: str, accent: str = "unknown") -> str:
    """A bordered box with a coloured left edge; both parts are HTML, escaped by the caller."""
    colour = SEVERITY_COLOURS.get(accent, SEVERITY_COLOURS["unknown"])
    return (
        f'<div class="gradwatch-card" style="border:1px solid {_LINE};border-left:5px solid '
        f"{colour};border-radius:4px;padding:6px 10px;margin:4px 0;max-width:760px;"
        f"font:13px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:{_INK};"
        f'overflow-wrap:anywhere">'
        f'<div style="font-weight:600;margin-bottom:2px">{title_html}</div>{body_html}</div>'
    )


def muted(text_html: str) -> str:
    """A line of secondary text (``text_html`` is HTML, escaped by the caller)."""
    return f'<div style="color:{_MUTED};font-size:12px">{text_html}</div>'


@dataclass(frozen=True)
class DepthProfile:
    """A gradient metric per layer along depth, small enough to keep with a result.

    Attributes:
        names: Module names, in depth order.
        labels: ``L<depth> <name>`` of each layer.
        values: The median over the measured steps of each layer's metric (NaN when the
            layer never had a positive finite value).
        norm: Whether each layer is a norm layer (``LayerInfo.role == "norm"``).
        metric: The trace metric (``"grad_rms"``).
        window: The steps the medians cover, e.g. ``"steps 0-299"``.
    """

    names: tuple[str, ...]
    labels: tuple[str, ...]
    values: tuple[float, ...]
    norm: tuple[bool, ...]
    metric: str
    window: str


#: Most rows a profile's medians read: evenly spaced over the measured steps, so the cost
#: stays bounded when ``diagnose`` runs at every flush of a long run.
PROFILE_MAX_ROWS = 512


def depth_profile(trace: Trace, metric: str = "grad_rms") -> DepthProfile | None:
    """The median of ``metric`` per layer over the steps it was measured, or None when the
    trace holds no positive finite value of it (a card then draws no sparkline).

    Beyond :data:`PROFILE_MAX_ROWS` measured steps, the median is over that many steps
    spread evenly from the first to the last (the window says so).

    Example:
        >>> from gradwatch.trace import Trace
        >>> t = Trace.from_arrays(["a", "b"], [0, 1], {"grad_rms": [[1e-3, 1.0], [1e-1, 1.0]]})
        >>> depth_profile(t).values
        (0.0505, 1.0)
    """
    if not trace.has_metric(metric) or not trace.layers:
        return None
    steps, rows = trace.measured(metric)
    window_steps = steps
    if len(steps) > PROFILE_MAX_ROWS:
        keep = np.unique(np.linspace(0, len(steps) - 1, PROFILE_MAX_ROWS).round().astype(int))
        steps, rows = steps[keep], rows[keep]
    good = np.where(np.isfinite(rows) & (rows > 0), rows, np.nan)
    if len(steps) == 0 or not np.any(np.isfinite(good)):
        return None
    with warnings.catch_warnings():
        # "All-NaN slice": a layer never measured stays NaN, on purpose.
        warnings.simplefilter("ignore", RuntimeWarning)
        medians = np.nanmedian(good, axis=0)
    window = f"step {steps[0]}" if steps[0] == steps[-1] else f"steps {steps[0]}-{steps[-1]}"
    if len(steps) < len(window_steps):
        window = f"{len(steps)} of the {len(window_steps)} {window}"
    return DepthProfile(
        names=tuple(layer.name for layer in trace.layers),
        labels=tuple(layer.label for layer in trace.layers),
        values=tuple(float(v) for v in medians),
        norm=tuple(layer.role == "norm" for layer in trace.layers),
        metric=metric,
        window=window,
    )


def _fmt(v: float) -> str:
    return f"{v:.2g}"


def sparkline_svg(
    profile: DepthProfile,
    *,
    highlight: Iterable[int] = (),
    highlight_kind: str = "critical",
    width: int = 320,
    height: int = 64,
) -> str:
    """The profile as an inline SVG line along depth (log scale, input side on the left).

    Weight layers are filled dots, norm layers hollow ones; layers in ``highlight`` (the
    columns a finding names) are drawn larger, in the colour of ``highlight_kind``. A layer
    with no value leaves a gap. Each dot carries a tooltip with its label and value.
    """
    n = len(profile.values)
    logs = [math.log10(v) if v > 0 and math.isfinite(v) else math.nan for v in profile.values]
    finite = [v for v in logs if math.isfinite(v)]
    pad_x, pad_y = 6.0, 6.0
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    span = hi - lo

    def xy(i: int, v: float) -> tuple[float, float]:
        x = pad_x + (width - 2 * pad_x) * (i / (n - 1) if n > 1 else 0.5)
        frac = 0.5 if span == 0 else (v - lo) / span
        return x, pad_y + (height - 2 * pad_y) * (1.0 - frac)

    marked = set(highlight)
    hot = SEVERITY_COLOURS.get(highlight_kind, SEVERITY_COLOURS["critical"])
    # Line segments over consecutive measured layers; a gap where a layer has no value.
    segments: list[list[str]] = [[]]
    for i, v in enumerate(logs):
        if math.isfinite(v):
            x, y = xy(i, v)
            segments[-1].append(f"{x:.1f},{y:.1f}")
        elif segments[-1]:
            segments.append([])
    parts = [
        f'<polyline points="{" ".join(s)}" fill="none" stroke="{_FLOW}" stroke-width="1.5"/>'
        for s in segments
        if len(s) > 1
    ]
    for i, v in enumerate(logs):
        if not math.isfinite(v):
            continue
        x, y = xy(i, v)
        colour = hot if i in marked else _FLOW
        r = 3.6 if i in marked else 2.4
        fill = "#fff" if profile.norm[i] else colour
        kind = " (norm layer)" if profile.norm[i] else ""
        tip = f"{profile.labels[i]}{kind}: {profile.metric} {_fmt(profile.values[i])}"
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{fill}" stroke="{colour}" '
            f'stroke-width="1.3"><title>{esc(tip)}</title></circle>'
        )
    label = f"{profile.metric} along depth, input side left, log scale" + (
        f", {_fmt(10**lo)} to {_fmt(10**hi)}" if finite else ", nothing measured"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)}" '
        f'style="display:block;max-width:100%;height:auto;background:#fafafa;'
        f'border:1px solid {_LINE};border-radius:3px"><title>{esc(label)}</title>'
        + "".join(parts)
        + "</svg>"
    )


def sparkline_block(
    profile: DepthProfile | None, highlight: Iterable[int] = (), highlight_kind: str = "critical"
) -> str:
    """The sparkline with a one-line caption saying how to read it ('' without a profile)."""
    if profile is None:
        return ""
    finite = [v for v in profile.values if v > 0 and math.isfinite(v)]
    if not finite:
        return ""
    svg = sparkline_svg(profile, highlight=highlight, highlight_kind=highlight_kind)
    hollow = "; hollow dots: norm layers" if any(profile.norm) else ""
    caption = (
        f"{esc(profile.metric)} per layer (median over {esc(profile.window)}), input side "
        f"left, log scale {_fmt(min(finite))} … {_fmt(max(finite))}{hollow}"
    )
    return f'<div style="margin:4px 0">{svg}{muted(caption)}</div>'


def run_name(trace: Trace) -> str | None:
    """The run's name as views show it: its directory's name, else ``meta["name"]``, else
    None (a trace built in memory)."""
    if trace.run_dir is not None:
        return trace.run_dir.name
    name = trace.meta.get("name")
    return None if name is None else str(name)


def layer_list(labels: Sequence[str], limit: int = 6) -> str:
    """Up to ``limit`` labels, escaped and comma-separated, then how many more."""
    shown = ", ".join(f"<code>{esc(s)}</code>" for s in labels[:limit])
    more = len(labels) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def trace_card(trace: Trace) -> str:
    """The card of ``Trace._repr_html_``: size, loss, first/last gradient ratio, sparkline."""
    steps = trace.steps
    facts = [f"{len(trace.layers)} layers", f"{len(steps)} recorded steps"]
    if len(steps):
        facts[-1] += f" ({steps[0]}–{steps[-1]})"
    if trace.has_scalar("loss"):
        loss = trace.scalar("loss")
        finite = loss[np.isfinite(loss)]
        if len(finite):
            facts.append(f"loss {_fmt(float(finite[0]))} → {_fmt(float(finite[-1]))}")
    ratio = trace.grad_ratio("median")
    body = [muted(esc(" · ".join(facts)))]
    if math.isfinite(ratio.value):
        body.append(
            f"<div>First/last layer gradient RMS: <b>{_fmt(ratio.value)}</b> "
            f"({esc(ratio.label)}; 1 = even flow, 1e-6 = six decades lost)</div>"
        )
    body.append(sparkline_block(depth_profile(trace)))
    where = f" <code>{esc(trace.run_dir)}</code>" if trace.run_dir is not None else ""
    title = f"gradwatch Trace: {esc(run_name(trace) or '(in memory)')}"
    return card(title + f'<span style="font-weight:400">{where}</span>', "".join(body))
