"""An optimizer that steps without the gradients (``zero_grad()`` between ``backward()`` and
``step()``, ``step()`` before ``backward()``, no ``backward()``): nothing trains, and every
alarm, or the note, says the loop is why, without remedies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diag_helpers import four_class_loop

import gradwatch as gw
from gradwatch.diagnosis.gradless import MIN_STEPS, gradless_note, gradless_steps
from gradwatch.trace import Trace

#: The loop's calls in each order: z = zero_grad(), Z = zero_grad(set_to_none=False),
#: b = loss.backward(), s = optimizer.step().
RIGHT = "zbs"


def _run(order: str, optimizer: str = "adam", steps: int = 120) -> tuple[Trace, list[float]]:
    """A 16-32-32-4 ReLU MLP on 4-class data trained with the loop's calls in ``order``."""
    model, x, y, gen = four_class_loop()
    opt = (
        torch.optim.AdamW(model.parameters(), lr=1e-3)
        if optimizer == "adamw"
        else torch.optim.Adam(model.parameters(), lr=1e-3)
    )
    losses = []
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(steps):
            i = torch.randint(0, 512, (64,), generator=gen)
            loss = F.cross_entropy(model(x[i]), y[i])
            for call in order:
                if call in "zZ":
                    opt.zero_grad(set_to_none=call == "z")
                elif call == "b":
                    loss.backward()
                else:
                    opt.step()
            w.log(loss=loss)
            losses.append(loss.item())
    return w.trace, losses


@pytest.mark.parametrize(
    ("order", "optimizer", "held"),
    [
        ("bzs", "adam", "none"),  # zero_grad() between backward() and step()
        ("zsb", "adam", "none"),  # step() before backward()
        ("zs", "adam", "none"),  # no backward() at all
        ("bZs", "adamw", "zero"),  # set_to_none=False: zeros; AdamW's decay alone moves
    ],
)
def test_a_loop_that_steps_without_its_gradients_is_told_so(
    order: str, optimizer: str, held: str
) -> None:
    """Nothing trains (the loss stays where it started); every alarm says the optimizer
    steps without the gradients of backward() and offers no remedy, or it is the note. They
    were told "no longer training" with structural remedies, or (zeros under AdamW) "tiny
    steps, so the learning rate is likely too low"."""
    trace, losses = _run(order, optimizer)
    assert abs(np.mean(losses[-10:]) - np.mean(losses[:10])) < 0.05  # nothing trains
    assert gradless_steps(trace) == {"steps": 120, "gradients": held}
    d = gw.diagnose(trace)
    said = "the loop steps without the gradients of `backward()`"
    alarms = [f for f in d if f.severity != "info"]
    if alarms:
        assert all(said in f.message and f.remedies == () for f in alarms)
        assert all(f.evidence["gradless_steps"]["gradients"] == held for f in alarms)
    else:
        assert any(said in note for note in d.notes)


def test_the_right_order_is_not_told() -> None:
    trace, losses = _run(RIGHT)
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
    assert gradless_steps(trace) is None
    d = gw.diagnose(trace)
    said = "steps without the gradients"
    assert not any(said in f.message for f in d) and not any(said in n for n in d.notes)


def _trace(grads: np.ndarray, weights: np.ndarray, **scalars: np.ndarray) -> Trace:
    steps = np.arange(len(grads))
    return Trace.from_arrays(
        ["fc", "head"],
        steps,
        {"grad_norm": grads, "weight_norm": weights},
        scalars=scalars or None,
    )


def test_it_needs_every_step_without_a_nonzero_gradient_and_unmoved_weights() -> None:
    """Missing gradients with weights that move are an optimizer that reads them elsewhere
    (DeepSpeed's ZeRO buffers, an optimizer run in backward hooks): not told. One nonzero
    gradient, an infinite one, a step GradScaler skipped, or fewer than MIN_STEPS steps: not
    told either. Zeros with weights that move (weight decay) are told."""
    n = 10
    none = np.full((n, 2), np.nan)
    still = np.ones((n, 2))
    moving = np.linspace(1.0, 2.0, n)[:, None] * np.ones((1, 2))
    assert gradless_steps(_trace(none, still)) == {"steps": n, "gradients": "none"}
    assert gradless_steps(_trace(none, moving)) is None
    assert gradless_steps(_trace(np.zeros((n, 2)), moving)) == {"steps": n, "gradients": "zero"}
    one = np.zeros((n, 2))
    one[4, 1] = 1e-9
    assert gradless_steps(_trace(one, still)) is None
    inf = none.copy()
    inf[3, 0] = np.inf
    assert gradless_steps(_trace(inf, still)) is None
    skipped = np.zeros(n)
    skipped[2] = 1.0
    assert gradless_steps(_trace(none, still, skipped=skipped)) is None
    short = MIN_STEPS - 1
    assert gradless_steps(_trace(none[:short], still[:short])) is None
    # Zeros from a model whose signal dies (a layer's output constant at every step).
    dead = Trace.from_arrays(
        ["fc", "head"],
        np.arange(n),
        {"grad_norm": np.zeros((n, 2)), "weight_norm": still, "act_std": np.zeros((n, 2))},
    )
    assert gradless_steps(dead) is None
    note = gradless_note([], _trace(none, still))
    assert note is not None and note.startswith("At each of the optimizer's 10 steps")
