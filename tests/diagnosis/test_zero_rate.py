"""A learning rate of 0 at every step (a warm-up schedule never stepped): nothing trains,
and every alarm, or the note, says why, without remedies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diag_helpers import four_class_loop, train_classifier

import gradwatch as gw
from gradwatch.diagnosis.zero_rate import MIN_STEPS, zero_rate_note, zero_rate_steps
from gradwatch.trace import Trace


def _warmed_up_run(step_scheduler: bool) -> tuple[Trace, list[float]]:
    """A 16-32-32-4 ReLU MLP on 4-class data, AdamW 1e-2 under a 20-step linear warm-up from
    0 (``LambdaLR``), 120 steps; the scheduler stepped after each optimizer step, or never."""
    model, x, y, gen = four_class_loop()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, step / 20))
    return train_classifier(
        model, opt, x, y, 120, gen=gen, schedule=schedule if step_scheduler else None
    )


def test_a_warm_up_never_stepped_is_told_its_rate_was_zero() -> None:
    """Without ``scheduler.step()`` the rate stays 0 and so does the model: every alarm (a
    plateau from the start, weights that no longer move, with structural remedies before)
    says the rate was 0 and offers nothing, or the note does. Stepped, it trains and nothing
    is said (its first step is at 0 by design)."""
    trace, losses = _warmed_up_run(step_scheduler=False)
    assert abs(np.mean(losses[-10:]) - np.mean(losses[:10])) < 0.05
    assert zero_rate_steps(trace) == {"steps": 120, "scalar": "optimizer_lr"}
    d = gw.diagnose(trace)
    said = "The learning rate was 0 at each of the 120 steps recorded"
    alarms = [f for f in d if f.severity != "info"]
    assert alarms or any(said in note for note in d.notes)
    assert all(said in f.message and f.remedies == () for f in alarms)
    trained, losses = _warmed_up_run(step_scheduler=True)
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
    assert zero_rate_steps(trained) is None


@pytest.mark.parametrize(
    ("rates", "zero"),
    [
        (np.zeros(MIN_STEPS), True),
        (np.zeros(MIN_STEPS - 1), False),
        (np.r_[0.0, 1e-4, 2e-4, 3e-4], False),  # a warm-up's first step is at 0
        (np.r_[np.zeros(5), 1e-9], False),
    ],
)
def test_every_recorded_rate_must_be_zero(rates: np.ndarray, zero: bool) -> None:
    t = Trace.from_arrays(
        ["fc"],
        np.arange(len(rates)),
        {"grad_rms": np.ones((len(rates), 1))},
        scalars={"optimizer_lr": rates},
    )
    assert (zero_rate_steps(t) is not None) == zero
    assert (zero_rate_note([], t) is not None) == zero
