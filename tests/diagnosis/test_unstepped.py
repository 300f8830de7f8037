"""Layers the watched optimizer does not step: their update ratio is not measured (another
optimizer may step them), and those whose weights never changed are named as never stepped,
in every alarm or as the note."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import gradwatch as gw
from gradwatch.diagnosis.unstepped import never_stepped, unstepped_note
from gradwatch.trace import Trace


def _run(optimizers: str, steps: int = 300, add_at: int | None = None) -> Trace:
    """A 3-layer ReLU MLP on 4-class data, Adam 1e-2, watched with the first optimizer:
    ``"all"`` (every layer), ``"head"`` (the head only), ``"two"`` (the head, and a second
    optimizer for the hidden layers); ``add_at``: the hidden layers join the head's
    optimizer at that step (``add_param_group``)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)
    )
    hidden = [*model[0].parameters(), *model[2].parameters()]
    first = model.parameters() if optimizers == "all" else model[4].parameters()
    opt = torch.optim.Adam(first, lr=1e-2)
    second = torch.optim.Adam(hidden, lr=1e-2) if optimizers == "two" else None
    x = torch.randn(512, 8)
    y = (x[:, :2].sum(1) > 0).long() + 2 * (x[:, 2] > 0).long()
    gen = torch.Generator().manual_seed(0)
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for step in range(steps):
            if step == add_at:
                opt.add_param_group({"params": hidden})
            i = torch.randint(0, 512, (64,), generator=gen)
            loss = F.cross_entropy(model(x[i]), y[i])
            opt.zero_grad()
            if second is not None:
                second.zero_grad()
            loss.backward()
            opt.step()
            if second is not None:
                second.step()
            w.log(loss=loss)
    return w.trace


def _sampled_ratios(trace: Trace) -> np.ndarray:
    ur = trace.matrix("update_ratio")
    return ur[np.isfinite(ur).any(axis=1)]  # the sampled steps' rows


def test_layers_outside_the_watched_optimizer_have_no_update_ratio_and_are_named() -> None:
    """Head only: the hidden layers are listed and their update ratio is missing (it read 0,
    their weights not moving over the head's step); the head's is measured. All in the
    optimizer: none listed, every ratio measured."""
    trace = _run("head")
    assert trace.meta["config"]["unstepped"] == {"count": 2, "layers": ["0", "2"]}
    ur = _sampled_ratios(trace)
    assert np.isnan(ur[:, :2]).all() and (ur[:, 2] > 0).all()
    full = _run("all", steps=40)
    assert full.meta["config"]["unstepped"] == {"count": 0, "layers": []}
    assert (_sampled_ratios(full) > 0).all()


def test_a_layer_left_out_of_the_optimizer_is_told_and_one_another_optimizer_steps_is_not() -> None:
    """Head only: the hidden layers' weights never change, and every alarm says they are not
    in the optimizer, without remedies (they were told "no longer training" with residual
    connections first). Stepped by a second optimizer: their weights move, nothing is said,
    and no "no longer training" either (their update over the watched step read 0)."""
    trace = _run("head")
    assert never_stepped(trace) == ["0", "2"]
    d = gw.diagnose(trace)
    alarms = [f for f in d if f.severity != "info"]
    assert alarms and all(
        "are not in the optimizer's parameter groups" in f.message and f.remedies == ()
        for f in alarms
    )
    assert not [f for f in d if "no longer training" in f.message]
    two = _run("two")
    assert two.meta["config"]["unstepped"]["count"] == 2 and never_stepped(two) == []
    assert not [f for f in gw.diagnose(two) if f.rule == "unstable_updates"]


def test_param_groups_added_later_count_from_the_next_flush() -> None:
    """Progressive unfreezing: the hidden layers join at step 50; from the flush at step 100
    they are stepped (no longer listed, their update ratio measured) and never named."""
    trace = _run("head", steps=250, add_at=50)
    assert trace.meta["config"]["unstepped"]["count"] == 0
    ur = trace.matrix("update_ratio")
    assert (ur[trace.steps >= 100][:, :2][np.isfinite(ur[trace.steps >= 100][:, 2])] > 0).all()
    assert never_stepped(trace) == []


def test_with_no_alarm_the_never_stepped_layers_are_the_note() -> None:
    t = Trace.from_arrays(
        ["enc", "head"], [0, 10, 20], {"weight_norm": np.array([[3.0, 1], [3.0, 1.5], [3.0, 2]])}
    )
    t.meta["config"] = {"unstepped": {"count": 2, "layers": ["enc", "head"]}}
    note = unstepped_note([], t)
    assert note is not None and note.startswith("Layer 'L0 enc' is not in the optimizer's")
    assert "L1 head" not in note  # its weights moved: another optimizer steps it
