"""A loss plateau no gradient finding explains, after the model learned, is info."""

from __future__ import annotations

import numpy as np
from diag_helpers import depth_profile, trace_of

import gradwatch as gw
from gradwatch.trace import Trace

N = 100


def _trace(loss: np.ndarray, grad_decades: float = 0.0) -> Trace:
    """6 layers whose grad_rms rises ``grad_decades`` along depth, with ``loss`` logged."""
    g = np.tile(depth_profile(6, grad_decades), (N, 1))
    return trace_of(6, N, {"grad_rms": g}, scalars={"loss": loss})


def _learns_then_flat(stop: int = 30) -> np.ndarray:
    """Falls 3% a step until ``stop``, then flat: a plateau from the 4th window."""
    return 2.3 * 0.97 ** np.minimum(np.arange(N), stop)


def _plateau(diagnosis: list[gw.Finding]) -> gw.Finding:
    (f,) = [f for f in diagnosis if f.rule == "loss_plateau"]
    return f


def test_a_plateau_after_learning_with_healthy_gradients_is_info() -> None:
    """The loss fell 2.3 -> 0.92 by step 30, then stayed: no other finding, so it is info,
    says what it measured, and offers no remedy."""
    f = _plateau(gw.diagnose(_trace(_learns_then_flat())))
    assert f.severity == "info" and f.remedies == ()
    assert f.evidence["unexplained"] is True and f.evidence["start_loss"] == 2.231
    assert f.message.startswith(
        "Loss plateau after learning: from step 30 the loss stayed near 0.9223 (from 2.231 at "
        "the start), and no other rule found a gradient problem"
    )


def test_a_plateau_from_the_start_stays_a_warning() -> None:
    """A loss that never improved by 5% is a warning whatever else was found."""
    flat = 2.3 + 0.001 * np.sin(np.arange(N))
    f = _plateau(gw.diagnose(_trace(flat)))
    assert f.severity == "warning" and "unexplained" not in f.evidence
    assert f.remedies


def test_a_plateau_beside_a_gradient_finding_stays_a_warning() -> None:
    """With the gradient vanishing 5 decades along depth (critical), the plateau is its
    symptom: a warning, as the rule wrote it."""
    diagnosis = gw.diagnose(_trace(_learns_then_flat(), grad_decades=5.0))
    assert [f.rule for f in diagnosis if f.severity == "critical"] == ["vanishing_gradient"]
    f = _plateau(diagnosis)
    assert f.severity == "warning" and f.message.startswith("Loss plateau: from step 30")


def test_only_a_diagnosis_that_ran_every_rule_settles_it() -> None:
    """With a subset of the rules a cause may not have been looked for: the rule's warning."""
    (f,) = gw.diagnose(_trace(_learns_then_flat()), rules=["loss_plateau"])
    assert f.severity == "warning"
