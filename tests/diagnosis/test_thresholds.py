"""Thresholds: defaults, overrides (nested and dotted), and clear errors on bad keys/values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from diag_helpers import depth_profile, trace_of

from gradwatch.diagnosis import RULE_IDS, Thresholds, diagnose
from gradwatch.diagnosis.thresholds import resolve_thresholds


def test_one_threshold_group_per_rule() -> None:
    """Thresholds has exactly one field per rule id, in RULE_IDS order."""
    assert tuple(f.name for f in dataclasses.fields(Thresholds)) == RULE_IDS


def test_every_default_has_a_source_comment() -> None:
    """Each threshold field line in thresholds.py has a comment right above it or inline."""
    import inspect

    from gradwatch.diagnosis import thresholds as mod

    for group in dataclasses.fields(Thresholds):
        cls = type(getattr(Thresholds(), group.name))
        lines = inspect.getsource(cls).splitlines()
        names = {f.name for f in dataclasses.fields(cls)}
        for i, line in enumerate(lines):
            head = line.strip().split(":")[0]
            if head in names and "=" in line:
                above = lines[i - 1].strip()
                assert above.startswith("#") or "#" in line, (
                    f"{cls.__name__}.{head} has no source comment"
                )
    assert mod.Thresholds is Thresholds


def test_nested_and_dotted_overrides_give_the_same_thresholds() -> None:
    """{'rule': {'name': v}} and {'rule.name': v} set the same value and leave others alone."""
    a = Thresholds.from_overrides({"dead_units": {"warn_fraction": 0.3}})
    b = Thresholds.from_overrides({"dead_units.warn_fraction": 0.3})
    assert a == b
    assert a.dead_units.warn_fraction == 0.3
    assert a.saturated_activation == Thresholds().saturated_activation
    assert a.dead_units.critical_fraction == Thresholds().dead_units.critical_fraction


def test_int_thresholds_stay_ints() -> None:
    """An integer threshold overridden with 20.0 becomes the int 20."""
    th = Thresholds.from_overrides({"vanishing_gradient.window": 20.0})
    assert th.vanishing_gradient.window == 20
    assert isinstance(th.vanishing_gradient.window, int)


def test_unknown_threshold_names_the_key_and_the_valid_ones() -> None:
    """A misspelt threshold raises ValueError naming it and listing the valid names."""
    with pytest.raises(ValueError, match=r"dead_units\.warn_frac.*warn_fraction"):
        Thresholds.from_overrides({"dead_units.warn_frac": 0.3})


def test_unknown_rule_names_the_rule_and_the_valid_ones() -> None:
    """An unknown rule id in the overrides raises ValueError listing the rule ids."""
    with pytest.raises(ValueError, match=r"'dead_unit'.*dead_units"):
        Thresholds.from_overrides({"dead_unit": {"warn_fraction": 0.3}})


def test_rule_without_threshold_name_is_refused() -> None:
    """A bare rule key with a number (no threshold name) says how to write it."""
    with pytest.raises(ValueError, match=r"dead_units\.<name>"):
        Thresholds.from_overrides({"dead_units": 0.3})


@pytest.mark.parametrize("value", ["0.3", None, True, [0.3]])
def test_non_numeric_values_are_type_errors(value: object) -> None:
    """A threshold value that is not a number raises TypeError quoting it."""
    with pytest.raises(TypeError, match="must be a number"):
        Thresholds.from_overrides({"dead_units.warn_fraction": value})


@pytest.mark.parametrize(
    ("key", "value"),
    [("dead_units.warn_fraction", -0.1), ("dead_units.window", 0), ("loss_plateau.window", 0.5)],
)
def test_out_of_range_values_are_refused(key: str, value: float) -> None:
    """Negative thresholds, zero windows and fractional integers are refused."""
    with pytest.raises((ValueError, TypeError), match=key.split(".")[1]):
        Thresholds.from_overrides({key: value})


def test_nan_threshold_is_refused() -> None:
    """A NaN threshold is refused when the Thresholds is built."""
    with pytest.raises(ValueError, match="finite"):
        Thresholds.from_overrides({"dead_units.warn_fraction": float("nan")})


def test_resolve_accepts_none_thresholds_and_dicts_only() -> None:
    """diagnose takes None, a Thresholds or a dict; anything else is a TypeError."""
    assert resolve_thresholds(None) == Thresholds()
    th = Thresholds.from_overrides({"dead_units.warn_fraction": 0.2})
    assert resolve_thresholds(th) is th
    assert resolve_thresholds({"dead_units.warn_fraction": 0.2}) == th
    with pytest.raises(TypeError, match="thresholds"):
        resolve_thresholds(0.2)  # type: ignore[arg-type]


def test_to_json_round_trips_through_overrides() -> None:
    """to_json gives plain values that rebuild the same Thresholds."""
    th = Thresholds.from_overrides({"short_memory.warn_decades": 3.0})
    assert Thresholds.from_overrides(th.to_json()) == th


def test_override_changes_what_diagnose_reports() -> None:
    """Raising the vanishing threshold above the trace's 3-decade trend silences the rule."""
    g = depth_profile(6, 3.0)
    trace = trace_of(6, 30, {"grad_rms": g})
    assert [f.rule for f in diagnose(trace)] == ["vanishing_gradient"]
    assert diagnose(trace, {"vanishing_gradient.warn_decades": 3.5}) == []
    assert (
        diagnose(
            trace,
            thresholds=Thresholds.from_overrides({"vanishing_gradient": {"warn_decades": 3.5}}),
        )
        == []
    )
    assert np.isclose(diagnose(trace)[0].evidence["max_contrast_decades"], 3.0, atol=1e-4)
