"""diagnose(): ordering, rule selection, argument checks, and the public exports."""

from __future__ import annotations

import numpy as np
import pytest
from diag_helpers import depth_profile, trace_of

import gradwatch as gw
from gradwatch.diagnosis import RULE_IDS, RULES, diagnose


def _trace_with_three_findings() -> gw.Trace:
    """Vanishing (critical, 5 decades), dead units (warning) and skipped steps (info)."""
    n = 40
    skipped = np.zeros(n)
    skipped[3] = 1.0
    nonfinite = np.zeros((n, 6))
    nonfinite[3, 2] = 1.0
    return trace_of(
        6,
        n,
        {
            "grad_rms": depth_profile(6, 5.0),
            "act_dead": np.array([0.0, 0.6, 0.0, 0.0, 0.0, 0.0]),
            "nonfinite": nonfinite,
        },
        scalars={"skipped": skipped},
    )


def test_findings_are_sorted_by_severity_then_rule_order() -> None:
    """Critical before warning before info; ties follow RULE_IDS."""
    found = [(f.rule, f.severity) for f in diagnose(_trace_with_three_findings())]
    assert found == [
        ("vanishing_gradient", "critical"),
        ("dead_units", "warning"),
        ("nonfinite_gradient", "info"),
    ]


def test_rules_argument_selects_rules() -> None:
    """`rules=` runs only the named rules; an unknown id is a clear error."""
    trace = _trace_with_three_findings()
    assert [f.rule for f in diagnose(trace, rules=["dead_units"])] == ["dead_units"]
    with pytest.raises(ValueError, match=r"unknown rule id.*dead_unit'.*vanishing_gradient"):
        diagnose(trace, rules=["dead_unit"])


def test_non_trace_argument_is_a_type_error() -> None:
    """Passing a run-dir string instead of a Trace says how to load one."""
    with pytest.raises(TypeError, match=r"gw.load"):
        diagnose("runs/exp1")  # type: ignore[arg-type]


def test_rule_registry_matches_rule_ids() -> None:
    """Every rule id has exactly one rule module, in the same order."""
    assert tuple(RULES) == RULE_IDS


def test_public_exports() -> None:
    """gw.diagnose and gw.Thresholds are the diagnosis package's objects."""
    from gradwatch.diagnosis import Thresholds

    assert gw.diagnose is diagnose
    assert gw.Thresholds is Thresholds
