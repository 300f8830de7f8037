"""A watched optimizer that never steps (``optimizer.step()`` forgotten) or stops (a new
optimizer built each step): the trace holds no step, or one, and the diagnosis says why
instead of "No problem found"."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diag_helpers import four_class_loop

import gradwatch as gw
from gradwatch.diagnosis.stepless import MIN_LOGS, stepless_logs, stepless_note
from gradwatch.trace import Trace


def _run(loop: str, steps: int = 60, evaluate: int = 0) -> tuple[Trace, list[float]]:
    """A 16-32-32-4 ReLU MLP under Adam 1e-2, its loss logged with its graph at every batch:
    ``"right"``; ``"no_step"`` (``optimizer.step()`` forgotten); ``"new_optimizer"`` (a new
    Adam after every step, the watched one stepping once); ``"accumulate"`` (a step every 8
    batches, the loss logged at each). ``evaluate`` more batches are logged after training,
    under ``no_grad`` (evaluation losses, without a graph)."""
    model, x, y, gen = four_class_loop()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for batch in range(steps):
            i = torch.randint(0, 512, (64,), generator=gen)
            loss = F.cross_entropy(model(x[i]), y[i])
            loss.backward()
            if loop != "no_step" and (loop != "accumulate" or batch % 8 == 7):
                opt.step()
                opt.zero_grad()
            if loop == "new_optimizer":
                opt = torch.optim.Adam(model.parameters(), lr=1e-2)
            w.log(loss=loss)
            losses.append(loss.item())
        with torch.no_grad():
            for _ in range(evaluate):
                w.log(val_loss=F.cross_entropy(model(x[:64]), y[:64]))
    return w.trace, losses


@pytest.mark.parametrize(
    ("loop", "recorded", "said"),
    [
        ("no_step", 0, "The watched optimizer never stepped: the loss was logged 60 times"),
        ("new_optimizer", 1, "The watched optimizer stopped stepping: since the last of its 1"),
    ],
)
def test_a_watched_optimizer_that_does_not_step_is_told(
    loop: str, recorded: int, said: str
) -> None:
    """It read "No problem found: no rule fired" (nothing recorded to judge)."""
    trace, _ = _run(loop)
    assert len(trace) == recorded
    d = gw.diagnose(trace)
    assert d.verdict.startswith(f"No rule fired, but: {said}")


@pytest.mark.parametrize("loop", ["right", "accumulate"])
def test_a_loop_that_steps_is_not_told_even_with_a_long_evaluation_after(loop: str) -> None:
    """One loss a step, or eight (a step every 8 logged micro-batches), then 100 evaluation
    losses logged under no_grad: nothing said."""
    trace, losses = _run(loop, steps=64, evaluate=100)
    assert np.mean(losses[-8:]) < 0.9 * np.mean(losses[:8])  # it learns (8 steps at least)
    # (the accumulating loop's last step comes after its 64th batch: one loss since)
    assert trace.meta["config"]["logged_losses"] == {"with_graph": 64, "since_last_step": 1}
    assert stepless_logs(trace) is None
    assert stepless_note([], trace) is None


def _meta(with_graph: int, since: int, steps: int) -> Trace:
    trace = Trace.from_arrays(["fc"], np.arange(steps), {})
    trace.meta["config"] = {
        "logged_losses": {"with_graph": with_graph, "since_last_step": since},
        "train_mode": {"steps": steps},
    }
    return trace


def test_the_count_must_be_many_and_far_above_the_steps_before() -> None:
    """At least MIN_LOGS since the last step, and four times the rate before it (one a step
    taken where no step came before the last); a trace without the record says nothing."""
    assert stepless_logs(_meta(MIN_LOGS, MIN_LOGS, 0)) == {
        "since_last_step": MIN_LOGS,
        "steps": 0,
        "per_step": None,
    }
    assert stepless_logs(_meta(MIN_LOGS - 1, MIN_LOGS - 1, 0)) is None
    # 10 steps at 8 losses each (gradient accumulation), then 31 or 32 since the last
    assert stepless_logs(_meta(72 + 31, 31, 10)) is None
    assert stepless_logs(_meta(72 + 32, 32, 10)) == {
        "since_last_step": 32,
        "steps": 10,
        "per_step": 8.0,
    }
    assert stepless_logs(Trace.from_arrays(["fc"], np.arange(3), {})) is None
