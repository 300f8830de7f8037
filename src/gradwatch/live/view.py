"""The live terminal view of a run being written (``gradwatch watch RUN_DIR``).

:func:`snapshot` reads the run directory as it stands (``gw.load`` keeps only whole flushes,
so a run still being written reads consistently) and the findings seen live
(``findings.jsonl``; a run recorded without the live layer is diagnosed instead).
:func:`render_text` and :func:`render_rich` draw it: the gradient's flow along depth as one
bar and one sparkline per layer group, the loss, the newest findings. :func:`changed` tells
the poller when a new chunk, status or finding has landed.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..diagnosis import diagnose
from ..trace import Trace, load
from ..trace.tags import layer_tags
from .findings_log import FINDINGS_FILE, read_findings

#: Statuses after which the run directory changes no more.
DONE = ("complete", "failed", "stopped")
_SPARKS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Group:
    """Consecutive layers drawn as one row: their median gradient RMS over recent steps.

    Attributes:
        label: ``L00-L03 encoder.layer.0`` (the first layer's name) or one layer's tag.
        grad_rms: Median over the group's layers of each layer's latest ``grad_rms``.
        history: The same at each of the recent steps shown (oldest first).
    """

    label: str
    grad_rms: float
    history: list[float]


@dataclass(frozen=True)
class Snapshot:
    """What ``gradwatch watch`` shows at one moment."""

    run_dir: str
    status: str
    steps: int
    layers: int
    loss: list[float] = field(default_factory=list)
    loss_steps: list[int] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    findings_from: str = "findings.jsonl"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN as None)."""
        return _finite(
            {
                "run_dir": self.run_dir,
                "status": self.status,
                "steps": self.steps,
                "layers": self.layers,
                "loss": self.loss[-1] if self.loss else None,
                "loss_step": self.loss_steps[-1] if self.loss_steps else None,
                "gradient_flow": [
                    {"layers": g.label, "grad_rms": g.grad_rms, "history": g.history}
                    for g in self.groups
                ],
                "findings": self.findings,
                "findings_from": self.findings_from,
            }
        )


def changed(run_dir: Path, before: tuple[Any, ...] | None) -> tuple[tuple[Any, ...], bool]:
    """The directory's state (names, sizes, mtimes) and whether it differs from ``before``."""
    try:
        state = tuple(
            sorted(
                (e.name, e.stat().st_size, e.stat().st_mtime_ns)
                for e in os.scandir(run_dir)
                if e.name.endswith((".parquet", ".json", ".jsonl"))
            )
        )
    except FileNotFoundError:
        state = ()
    return state, state != before


def snapshot(run_dir: str | os.PathLike[str], *, groups: int = 16, history: int = 40) -> Snapshot:
    """Read a run directory (possibly being written) into what the view shows.

    Args:
        run_dir: The run directory.
        groups: Most rows of the gradient-flow view; deeper models group consecutive layers.
        history: Recent recorded steps each sparkline covers.
    """
    # The findings first: the recorder appends them after writing their flush's data, so a
    # trace loaded afterwards holds every step they speak of. Loaded the other way round, a
    # flush landing between the two reads showed a NaN finding of step 35 beside a trace
    # that ended at step 29 (a CI run of tests/cli/test_watch_cmd.py).
    log = Path(run_dir) / FINDINGS_FILE
    logged = log.exists()
    records = read_findings(log)
    trace = load(run_dir)
    status = str(trace.meta.get("status", "running"))
    loss_steps, loss = _loss(trace)
    source = FINDINGS_FILE
    if not logged:
        # Recorded without the live layer: say what the rules say now.
        records = [{"seen_at_step": len(trace.steps), **f.to_json()} for f in diagnose(trace)]
        source = "diagnose"
    return Snapshot(
        run_dir=str(run_dir),
        status=status,
        steps=int(trace.steps[-1]) + 1 if len(trace.steps) else 0,
        layers=len(trace.layers),
        loss=loss,
        loss_steps=loss_steps,
        groups=_groups(trace, groups, history),
        findings=records,
        findings_from=source,
    )


def _loss(trace: Trace) -> tuple[list[int], list[float]]:
    if not trace.has_scalar("loss"):
        return [], []
    vec = trace.scalar("loss")
    # A NaN loss stays NaN, shown as nan: after a blow-up that is the news, not a gap.
    return trace.scalar_steps.tolist(), vec.tolist()


def _groups(trace: Trace, n_groups: int, history: int) -> list[Group]:
    if not trace.has_metric("grad_rms") or not len(trace.steps) or not trace.layers:
        return []
    mat = trace.matrix("grad_rms")[-history:]  # (recent steps, layers)
    tags = layer_tags(trace)
    n = len(tags)
    bounds = np.linspace(0, n, min(n_groups, n) + 1).round().astype(int)
    out = []
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        block = mat[:, lo:hi]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            # "All-NaN slice": a group not measured at a step (a sampled metric, a NaN).
            warnings.simplefilter("ignore", RuntimeWarning)
            per_step = np.nanmedian(np.where(np.isfinite(block), block, np.nan), axis=1)
        depth_lo, name = tags[lo].split(" ", 1)
        label = tags[lo] if hi - lo == 1 else f"{depth_lo}-{tags[hi - 1].split(' ')[0]} {name}"
        out.append(
            Group(
                label=label,
                grad_rms=float(per_step[-1]),  # the latest step: NaN after a blow-up
                history=per_step.tolist(),
            )
        )
    return out


# ---------------------------------------------------------------------- drawing
def sparkline(values: list[float]) -> str:
    """One character per value, on a log scale; a space where not measured."""
    logs = [math.log10(v) if v > 0 and math.isfinite(v) else math.nan for v in values]
    ok = [v for v in logs if not math.isnan(v)]
    if not ok:
        return " " * len(values)
    lo, hi = min(ok), max(ok)
    span = hi - lo or 1.0
    return "".join(
        " " if math.isnan(v) else _SPARKS[int((v - lo) / span * (len(_SPARKS) - 1))] for v in logs
    )


def _bars(groups: list[Group], width: int = 24) -> list[str]:
    """Bars of log10(grad_rms), scaled over the groups (the flow along depth at a glance)."""
    logs = [math.log10(g.grad_rms) if g.grad_rms > 0 else math.nan for g in groups]
    ok = [v for v in logs if math.isfinite(v)]
    lo, hi = (min(ok), max(ok)) if ok else (0.0, 1.0)
    span = hi - lo or 1.0
    bars = []
    for v in logs:
        if not math.isfinite(v):
            bars.append("NaN/Inf")
            continue
        bars.append("█" * max(1, round(1 + (v - lo) / span * (width - 1))))
    return bars


def _finding_line(r: dict[str, Any]) -> str:
    layers = ", ".join(r.get("layer_labels") or r.get("layers") or []) or "whole run"
    return (
        f"step {r.get('seen_at_step', '?')}: {r.get('severity')} {r.get('rule')} [{layers}]: "
        f"{r.get('message', '')}"
    )


def render_text(snap: Snapshot, *, findings: int = 5) -> str:
    """The view as plain text: one block per update (for logs, pipes, ``--format human``
    without a terminal)."""
    lines = [
        f"gradwatch watch {snap.run_dir}: {snap.status}, {snap.steps} steps, {snap.layers} layers"
    ]
    if snap.loss:
        lines.append(
            f"loss {snap.loss[-1]:.4g} at step {snap.loss_steps[-1]}  {sparkline(snap.loss[-40:])}"
        )
    if snap.groups:
        lines.append(
            "gradient RMS along depth (input first; bar: latest, log scale; then history):"
        )
        width = max(len(g.label) for g in snap.groups)
        for g, bar in zip(snap.groups, _bars(snap.groups), strict=True):
            lines.append(
                f"  {g.label:<{width}}  {g.grad_rms:9.2e}  {bar:<24}  {sparkline(g.history)}"
            )
    else:
        lines.append("waiting for the first flush ...")
    newest = list(reversed(snap.findings))[:findings]
    lines.append(f"findings ({len(snap.findings)}, newest first, from {snap.findings_from}):")
    lines += [f"  {_finding_line(r)}" for r in newest] or ["  none"]
    return "\n".join(lines)


def render_rich(snap: Snapshot, *, findings: int = 5) -> Any:
    """The view as a rich renderable (for ``rich.live.Live`` in a terminal)."""
    from rich.console import Group as RichGroup
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    colour = {"complete": "green", "failed": "red", "stopped": "red"}.get(snap.status, "yellow")
    head = Text.from_markup(
        f"[bold]gradwatch watch[/] {escape(snap.run_dir)}  [{colour}]{snap.status}[/]  "
        f"{snap.steps} steps, {snap.layers} layers"
    )
    parts: list[Any] = [head]
    if snap.loss:
        parts.append(
            Text(f"loss {snap.loss[-1]:.4g} at step {snap.loss_steps[-1]}  ")
            + Text(sparkline(snap.loss[-40:]), style="cyan")
        )
    flow = Table(
        title="gradient RMS along depth (input first)",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    flow.add_column("layers")
    flow.add_column("grad_rms", justify="right")
    flow.add_column("latest (log)")
    flow.add_column("history")
    for g, bar in zip(snap.groups, _bars(snap.groups), strict=True):
        style = "red" if not math.isfinite(g.grad_rms) else "green"
        flow.add_row(
            escape(g.label),
            f"{g.grad_rms:.2e}",
            Text(bar, style=style),
            Text(sparkline(g.history), style="cyan"),
        )
    parts.append(flow if snap.groups else Text("waiting for the first flush ...", style="dim"))
    severity_style = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
    found = Table(
        title=f"findings (newest first, from {snap.findings_from})",
        title_justify="left",
        box=None,
        pad_edge=False,
        show_header=False,
    )
    for r in list(reversed(snap.findings))[:findings]:
        found.add_row(
            Text(
                _finding_line(r),
                style=severity_style.get(str(r.get("severity")), ""),
                no_wrap=True,
                overflow="ellipsis",
            )
        )
    parts.append(found if snap.findings else Text("no findings", style="green"))
    return RichGroup(*parts)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
