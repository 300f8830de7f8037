"""The ``gradwatch demo`` story as a library function: record, diagnose, remedy, compare.

A deep sigmoid MLP on scikit-learn's bundled digits is trained with recording, diagnosed,
then trained again once per prescribed remedy (and once with a combined fix) on the same
data from the same seed. Every number in the final table comes from those runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from gradwatch.diagnosis import Finding, diagnose
from gradwatch.remedies.prescribe import Prescription, prescribe
from gradwatch.report import summarize, verdict, write_report
from gradwatch.trace import Trace

from .config import RunConfig
from .models import MLPConfig, build_model
from .remedies import DEFAULT_OPTIONS, MODEL_REMEDIES
from .runner import RunResult, run
from .tasks import make_task

#: The classic remedies for a vanishing gradient, tried when the baseline gives the
#: prescription nothing to work from (no finding, or no prescribed remedy the lab can apply
#: to an MLP), so the demo still shows each fix; an activation swap always travels with the
#: init that suits it (ReLU + He).
STANDARD_REMEDIES: tuple[tuple[str, ...], ...] = (
    ("relu", "init_he"),
    ("batchnorm",),
    ("residual",),
    ("init_lsuv",),
    ("clip_norm",),
    ("reduce_depth",),
    ("layerwise_pretraining",),
)
COMBINED: tuple[str, ...] = ("relu", "init_he", "batchnorm", "residual")


@dataclass(frozen=True)
class DemoConfig:
    """The demo's network and training; defaults keep the whole demo near 30 s on 2 cores."""

    # 20 sigmoid layers: the first layer gets ~1e-16 of the last layer's gradient.
    depth: int = 20
    width: int = 64
    # Adam: even per-parameter rescaling cannot rescue a 1e-16 gradient (its eps is 1e-8).
    optimizer: str = "adam"
    lr: float = 1e-3
    # 300 steps (~14 epochs of the 1,348 training digits): the fixed nets reach ~0.9 accuracy.
    steps: int = 300
    batch_size: int = 64
    seed: int = 0
    # Sample activations every 10 steps (the recorder's default).
    sample_every: int = 10


@dataclass(frozen=True)
class DemoRow:
    """One run of the demo: its remedies and what it measured."""

    label: str
    remedies: tuple[str, ...]
    result: RunResult
    reason: str = ""


@dataclass
class DemoOutcome:
    """Everything the demo measured, for printing or testing."""

    baseline: RunResult
    rows: list[DemoRow] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    prescribed_by: str = "standard list"
    diagnosis: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None
    #: gw.prescribe's ranking for the baseline's findings, checked against the demo's model.
    prescriptions: list[Prescription] = field(default_factory=list)


@dataclass(frozen=True)
class MeasuredChoice:
    """A remedy as the demo's verdict ranks it: ``gw.prescribe``'s id and reason, plus what
    the demo's own run of it measured."""

    remedy: str
    reason: str
    accuracy: float
    critical: tuple[str, ...]


def _label(remedies: tuple[str, ...]) -> str:
    names = {
        "relu": "ReLU",
        "init_he": "He init",
        "batchnorm": "batch norm",
        "residual": "residual",
        "init_lsuv": "LSUV init",
        "clip_norm": "clip norm",
        "reduce_depth": "reduced depth",
        "layerwise_pretraining": "layer-wise pretraining",
        "init_xavier": "Xavier init",
        "init_lecun": "LeCun init",
        "init_orthogonal": "orthogonal init",
        "layernorm": "layer norm",
        "clip_value": "clip value",
        "clip_adaptive": "adaptive clipping (AGC)",
        "lr_warmup": "learning-rate warm-up",
        "lower_lr": "lower learning rate",
        "raise_lr": "higher learning rate",
    }
    return " + ".join(names.get(r, r) for r in remedies)


def explain_vanishing(result: RunResult) -> dict[str, Any]:
    """Where, how much and why the gradient vanishes, measured from the baseline's trace.

    Returns a dict with ``ratio`` (first/last layer gradient RMS, the median over steps of
    ``Trace.grad_ratio``: the run's ``grad_ratio``), ``ratio_label`` (its window, e.g.
    ``"median over steps 0-299"``), ``per_layer`` (geometric mean factor per layer),
    ``below`` (the layers whose median gradient RMS is < 1e-3 of the last layer's),
    ``relative_rms`` (that per-layer profile), ``sigmoid_slope`` (mean sigmoid derivative
    s(1-s) estimated from the sampled activation means; at most 0.25) and ``layers``
    (labels ``L<depth> <name>``, input side first).
    """
    trace = result.trace
    if trace is None:
        raise ValueError("explain_vanishing needs a result that holds its trace")
    rms = np.nanmedian(trace.matrix("grad_rms"), axis=0)  # (layers,)
    names = trace.layer_labels
    rel = rms / rms[-1]
    # The one first/last ratio (Trace.grad_ratio, the median over steps): the number the
    # comparison table prints for this run.
    grad_ratio = trace.grad_ratio("median")
    ratio = grad_ratio.value
    per_layer = float(ratio ** (1 / max(1, len(rms) - 1))) if ratio > 0 else 0.0
    act = trace.matrix("act_mean")[:, :-1] if trace.has_metric("act_mean") else np.empty((0, 0))
    slope = float("nan")
    if act.size and np.isfinite(act).any():
        s = np.nanmean(act, axis=0)
        slope = float(np.nanmean(s * (1 - s)))
    return {
        "ratio": ratio,
        "ratio_label": grad_ratio.label,
        "per_layer": per_layer,
        "below": [n for n, r in zip(names, rel, strict=True) if r < 1e-3],
        "sigmoid_slope": slope,
        "layers": names,
        "relative_rms": rel.tolist(),
    }


def _prescriptions(findings: list[Finding], config: RunConfig, trace: Trace) -> list[Prescription]:
    """gw.prescribe's ranking of the findings' remedies that fit the demo's model."""
    if not findings:
        return []
    task_shape = (64, 10)
    return prescribe(findings, build_model(config.model, *task_shape), trace=trace)


def _prescribed(
    prescriptions: list[Prescription],
) -> tuple[list[tuple[tuple[str, ...], str, dict[str, Any]]], str]:
    """(remedy group, reason, options) per demo arm, and where the list came from."""
    if not prescriptions:
        return [(g, "", {}) for g in STANDARD_REMEDIES], "standard list"
    groups: list[tuple[tuple[str, ...], str, dict[str, Any]]] = []
    allowed = set(MODEL_REMEDIES["mlp"])
    for p in prescriptions:
        if not p.applicable or p.remedy not in allowed:
            continue
        known = DEFAULT_OPTIONS.get(p.remedy, {})
        options = {k: v for k, v in p.options.items() if k in known and isinstance(v, (int, float))}
        group: tuple[str, ...] = (p.remedy,)
        if p.remedy in ("relu", "leaky_relu", "prelu", "elu"):
            group = (p.remedy, "init_he")  # an activation swap keeps its matching init
        if p.remedy == "init_he" and any("relu" in g[0] for g, _, _ in groups):
            continue
        groups.append((group, p.reason, options))
    return (groups or [(g, "", {}) for g in STANDARD_REMEDIES]), "gw.prescribe"


def run_demo(
    out: str | Path,
    config: DemoConfig | None = None,
    *,
    remedies: tuple[tuple[str, ...], ...] | None = None,
    on_event: Callable[[str, Any], None] | None = None,
    progress: Callable[[str, int], Callable[[int, int], None] | None] | None = None,
) -> DemoOutcome:
    """Run the demo into ``out``: one gradwatch run dir per arm (see :func:`write_demo_report`).

    Args:
        out: Directory for the runs; existing demo runs there are replaced.
        config: Network and training settings (the defaults are the demo).
        remedies: Remedy groups to try instead of the prescription (tests use fewer).
        on_event: Called with ("baseline" | "diagnosis" | "row", payload) as the
            story unfolds, so a CLI can print as it goes.
        progress: Factory ``progress(label, steps)`` returning a per-step callback, or None.

    Example:
        >>> outcome = run_demo("gradwatch-demo", DemoConfig(steps=50))  # doctest: +SKIP
        >>> outcome.rows[0].label  # doctest: +SKIP
        'ReLU + He init'
    """
    cfg = config or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    emit = on_event or (lambda _kind, _payload: None)
    task = make_task("digits")
    base = _base_config(cfg)

    def train(config: RunConfig, label: str) -> RunResult:
        callback = progress(label, config.steps) if progress is not None else None
        return run(config, out / config.name, task=task, overwrite=True, progress=callback)

    baseline = train(base, f"{cfg.depth}-layer sigmoid MLP")
    emit("baseline", baseline)
    assert baseline.trace is not None  # run() returns the trace it recorded
    findings = diagnose(baseline.trace)
    outcome = DemoOutcome(baseline=baseline, findings=findings)
    outcome.diagnosis = explain_vanishing(baseline)
    outcome.prescriptions = _prescriptions(findings, base, baseline.trace)
    arms: list[tuple[tuple[str, ...], str, dict[str, Any]]]
    if remedies is not None:
        arms = [(g, "", {}) for g in remedies]
        outcome.prescribed_by = "caller"
    else:
        arms, outcome.prescribed_by = _prescribed(outcome.prescriptions)
        arms.append((COMBINED, "combined fix", {}))
    emit("diagnosis", outcome)
    for i, (group, reason, options) in enumerate(arms, start=1):
        name = f"{i:02d}-" + "+".join(group)
        arm = replace(
            base,
            remedies=group,
            remedy_options={r: options for r in group if options and r in DEFAULT_OPTIONS},
            name=name,
        ).validate()
        label = arm_label(group)
        row = DemoRow(label, group, train(arm, label), reason)
        outcome.rows.append(row)
        emit("row", row)

    return outcome


def _base_config(cfg: DemoConfig) -> RunConfig:
    """The baseline's lab config: a sigmoid MLP on digits with the demo's settings."""
    return RunConfig(
        model=MLPConfig(depth=cfg.depth, width=cfg.width, activation="sigmoid"),
        task="digits",
        optimizer=cfg.optimizer,  # type: ignore[arg-type]
        lr=cfg.lr,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        sample_every=cfg.sample_every,
        name="baseline",
    ).validate()


def arm_label(group: tuple[str, ...]) -> str:
    """The label of the demo arm that applies ``group`` (the comparison table's run name)."""
    return _label(group) if group != COMBINED else f"combined ({_label(group)})"


def planned_arms(config: DemoConfig | None = None) -> list[str]:
    """The comparison table's run names as :func:`run_demo` would train them now, baseline
    first: trains only the baseline, in memory (~5 s at the defaults), and asks
    ``gw.prescribe``. Lets a check tell whether saved demo output (a docs table, a
    screenshot) still matches the demo without running every arm.
    """
    base = _base_config(config or DemoConfig())
    baseline = run(base, None, task=make_task("digits"))
    assert baseline.trace is not None  # an in-memory run keeps its trace
    prescriptions = _prescriptions(diagnose(baseline.trace), base, baseline.trace)
    arms, _ = _prescribed(prescriptions)
    return [BASELINE_ROW] + [arm_label(g) for g, _, _ in arms] + [arm_label(COMBINED)]


def write_demo_report(outcome: DemoOutcome, out: str | Path) -> Path:
    """Write ``out/report.html`` for the baseline, the best single remedy and the combined
    fix (the report takes ~4 s per run on 2 cores, so not all arms). Every arm's run dir
    stays in ``out`` for ``gradwatch report``.
    """
    chosen = report_rows(outcome)
    runs = [_run_dir(outcome.baseline)] + [_run_dir(r.result) for r in chosen]
    labels = [BASELINE_LABEL] + [r.label for r in chosen]
    ranked, failed = measured_ranking(outcome)
    outcome.report = Path(
        write_report(
            runs,
            Path(out) / "report.html",
            labels=labels,
            # the baseline's verdict: gw.prescribe's ranking, what this demo measured failing
            # never first (the same lines demo_verdict prints)
            remedies={BASELINE_LABEL: ranked},
            failed={BASELINE_LABEL: failed},
        )
    )
    return outcome.report


def report_rows(outcome: DemoOutcome) -> list[DemoRow]:
    """The arms the HTML report shows after the baseline: the most accurate single remedy,
    then the combined fix."""
    singles = [r for r in outcome.rows if r.remedies != COMBINED]
    chosen = [max(singles, key=lambda r: r.result.test_metric)] if singles else []
    return chosen + [r for r in outcome.rows if r.remedies == COMBINED]


#: The baseline's name in the demo's HTML report.
BASELINE_LABEL = "baseline (sigmoid)"
#: The baseline's name in the comparison table.
BASELINE_ROW = "baseline: sigmoid"


def _critical(result: RunResult) -> tuple[str, ...]:
    return tuple(sorted({f["rule"] for f in result.findings if f.get("severity") == "critical"}))


def measured_ranking(outcome: DemoOutcome) -> tuple[list[MeasuredChoice], dict[str, str]]:
    """The remedies the demo tried alone, in ``gw.prescribe``'s order, and those its own runs
    measured as failing (remedy id -> what was measured).

    An arm fails when a critical finding remains after it, or when its test accuracy is below
    that of another single-remedy arm; so the first remedy not failing, the verdict's "first
    thing to try", is the best single arm of the comparison table. An arm is named by its
    first remedy (``ReLU + He init`` is ``relu``: He init travels with it); the combined fix
    is several remedies and is not ranked. Remedies the caller chose that ``gw.prescribe``
    does not rank come after, in the order they ran.
    """
    order = {p.remedy: i for i, p in enumerate(outcome.prescriptions)}
    reasons = {p.remedy: p.reason for p in outcome.prescriptions}
    singles = [r for r in outcome.rows if r.remedies != COMBINED and r.remedies]
    choices = [
        MeasuredChoice(
            remedy=r.remedies[0],
            reason=(
                f"{reasons.get(r.remedies[0]) or r.reason or 'tried by the demo'}; measured in "
                f"this demo: test accuracy {r.result.test_metric:.3f}, "
                + (
                    f"{', '.join(_critical(r.result))} still critical"
                    if _critical(r.result)
                    else "no critical finding left"
                )
            ),
            accuracy=r.result.test_metric,
            critical=_critical(r.result),
        )
        for r in singles
    ]
    choices.sort(key=lambda c: order.get(c.remedy, len(order)))  # stable: run order after
    best = max((c.accuracy for c in choices if math.isfinite(c.accuracy)), default=math.nan)
    failed: dict[str, str] = {}
    for c in choices:
        if c.critical:
            failed[c.remedy] = (
                f"{', '.join(c.critical)} still critical (test accuracy {c.accuracy:.3f})"
            )
        elif not c.accuracy >= best:
            failed[c.remedy] = f"test accuracy {c.accuracy:.3f}, below the best arm's {best:.3f}"
    return choices, failed


def demo_verdict(outcome: DemoOutcome) -> list[str]:
    """The baseline's verdict as the demo prints it and its HTML report shows it: the worst
    finding, the first remedy (:func:`measured_ranking`), the gradient flow, labelled."""
    trace = outcome.baseline.trace
    if trace is None:
        raise ValueError("demo_verdict needs the baseline's trace (run_demo keeps it)")
    ranked, failed = measured_ranking(outcome)
    summary = summarize(trace, outcome.findings, BASELINE_LABEL)
    return verdict(summary, outcome.findings, remedies=ranked, failed=failed)


def _run_dir(result: RunResult) -> str:
    if result.run_dir is None:
        raise ValueError(f"run {result.name!r} was kept in memory; the report reads run dirs")
    return result.run_dir


def comparison_rows(outcome: DemoOutcome) -> list[dict[str, Any]]:
    """The final table as plain rows: label, accuracy, grad ratio (the median over steps of
    ``Trace.grad_ratio``, with its window in ``grad_ratio_label``), findings, time."""

    def rules(result: RunResult) -> str:
        return ", ".join(sorted({f["rule"] for f in result.findings})) or "none"

    rows = []
    for label, remedies, result in [(BASELINE_ROW, (), outcome.baseline)] + [
        (r.label, r.remedies, r.result) for r in outcome.rows
    ]:
        rows.append(
            {
                "run": label,
                "remedies": list(remedies),
                "test_accuracy": result.test_metric,
                "grad_ratio": result.grad_ratio,
                "grad_ratio_label": (
                    result.trace.grad_ratio("median").label
                    if result.trace is not None
                    else "median over the run's steps"
                ),
                "findings": rules(result),
                "seconds": result.seconds,
                "diverged": result.diverged,
            }
        )
    return rows


def format_ratio(value: float) -> str:
    """A gradient ratio for a table: ``3.2e-16`` or ``0.42``."""
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.2f}" if 0.01 <= value < 100 else f"{value:.1e}"
