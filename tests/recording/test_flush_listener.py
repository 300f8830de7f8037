"""Flush listeners: what the live layer builds on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.recording import Flush


def _train(w: gw.Watch, model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    for _ in range(steps):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.log(loss=loss)


def _model() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def test_listener_sees_every_flush_in_order_with_the_written_tables(tmp_path):
    """Each flush reaches the listener with its tables and step count; close's is final."""
    model, opt = _model()
    events: list[Flush] = []
    w = gw.watch(model, opt, tmp_path / "run", flush_every=4)
    w.add_flush_listener(lambda watch, event: events.append(event))
    with w:
        _train(w, model, opt, 10)
    assert [e.end_step for e in events] == [4, 8, 10]
    assert [e.final for e in events] == [False, False, True]
    steps = sorted(
        {s for e in events for k, t in e.tables if k == "layers" for s in t["step"].to_pylist()}
    )
    assert steps == list(range(10))
    assert gw.load(tmp_path / "run").meta["status"] == "complete"


def test_a_listener_that_raises_stops_the_step_after_the_data_is_written(tmp_path):
    """An exception from a listener reaches the training loop; the run directory holds the window."""
    model, opt = _model()

    def boom(watch: gw.Watch, event: Flush) -> None:
        if not event.final:
            raise RuntimeError("stop here")

    with (
        pytest.raises(RuntimeError, match="stop here"),
        gw.watch(model, opt, tmp_path / "run", flush_every=4) as w,
    ):
        w.add_flush_listener(boom)
        _train(w, model, opt, 10)
    trace = gw.load(tmp_path / "run")
    assert trace.meta["status"] == "failed"
    assert trace.matrix("grad_rms").shape[0] >= 4


def test_should_stop_starts_false_and_listener_must_be_callable():
    """`should_stop` is a plain flag; a non-callable listener is refused by name."""
    model, opt = _model()
    with gw.watch(model, opt) as w:
        assert w.should_stop is False
        with pytest.raises(TypeError, match="listener"):
            w.add_flush_listener(42)  # type: ignore[arg-type]
