"""``diagnose``: run every rule on a trace and rank the findings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..trace import Trace
from ..trace.cards import depth_profile, run_name
from .finding import RULE_IDS, SEVERITY_RANK, Diagnosis, Finding
from .input_scale import settle_input_scale
from .large_steps import settle_large_steps
from .loop_mistakes import loop_notes, settle_loop
from .recovered import settle_recovered
from .rules import RULES
from .small_steps import settle_small_steps
from .symptoms import settle_symptoms
from .thresholds import Thresholds, resolve_thresholds


def diagnose(
    trace: Trace,
    thresholds: Thresholds | Mapping[str, Any] | None = None,
    *,
    rules: tuple[str, ...] | list[str] | None = None,
) -> Diagnosis:
    """Run the diagnosis rules on a trace.

    Args:
        trace: A recorded (``gw.load``, ``Watch.trace``) or hand-built trace.
        thresholds: ``None`` for the documented defaults, a :class:`Thresholds`, or a dict of
            overrides (``{"dead_units.warn_fraction": 0.3}`` or
            ``{"dead_units": {"warn_fraction": 0.3}}``).
        rules: Rule ids to run (default: all of :data:`RULE_IDS`).

    Returns:
        A :class:`Diagnosis`: a ``list`` of findings, most severe first, then in
        :data:`RULE_IDS` order (empty when healthy), with a verdict, a text ``summary()``
        and a card with the gradient along depth when shown in Jupyter.

    Raises:
        TypeError: When ``trace`` is not a Trace or ``thresholds`` has the wrong type.
        ValueError: On an unknown rule id or threshold name (the message lists valid ones).

    Example:
        >>> import numpy as np
        >>> import gradwatch as gw
        >>> from gradwatch.trace import Trace
        >>> g = np.tile(10.0 ** -np.arange(12.0)[::-1], (30, 1))  # first layer 1e-11x last
        >>> trace = Trace.from_arrays([f"l{i}" for i in range(12)], range(30), {"grad_rms": g})
        >>> [f.rule for f in gw.diagnose(trace)]
        ['vanishing_gradient']
    """
    if not isinstance(trace, Trace):
        raise TypeError(
            f"Expected argument `trace` to be a gradwatch Trace but got {type(trace).__name__}. "
            "Load one with `gw.load(run_dir)` or use `watch.trace`."
        )
    th = resolve_thresholds(thresholds)
    selected = RULE_IDS if rules is None else tuple(rules)
    unknown = [r for r in selected if r not in RULES]
    if unknown:
        raise ValueError(f"unknown rule id(s) {unknown} in `rules`; valid ids are {list(RULE_IDS)}")
    findings: list[Finding] = []
    for rule_id in selected:
        found = RULES[rule_id](trace, getattr(th, rule_id))
        if found is not None:
            # Rules name layers by module name; people read them as L<depth> <name>.
            labels = tuple(trace.layer_label(name) for name in found.layers)
            findings.append(replace(found, layer_labels=labels))
    if set(RULE_IDS) <= set(selected):
        # A poor start that nothing followed is info; what followed steps too large
        # names the rate first, and so does what steps too small to train left as it was;
        # a loss plateau after learning that no gradient finding explains is info.
        findings = settle_large_steps(settle_recovered(findings, trace))
        findings = settle_symptoms(settle_small_steps(findings), trace)
        # Last, the loop's own mistakes: a model trained in eval mode, a loss given outputs of
        # the wrong kind, layers the optimizer never steps, gradients never zeroed; and inputs
        # far from unit scale.
        findings = settle_input_scale(settle_loop(findings, trace), trace)
    order = {r: i for i, r in enumerate(RULE_IDS)}
    findings.sort(key=lambda f: (-SEVERITY_RANK[f.severity], order[f.rule]))
    # What the loop did wrong that no finding carries (no rule has an id for it).
    notes = loop_notes(findings, trace) if set(RULE_IDS) <= set(selected) else ()
    # The card's sparkline: a few floats per layer, so the result pickles small.
    return Diagnosis(
        findings,
        profile=depth_profile(trace),
        run=run_name(trace),
        notes=notes,
    )
