"""What the recorder does to keep a step cheap keeps the values exact: logged tensors written
at the flush, host constants sent to the device once, sampled steps combined per window, the
layer table written by hand."""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.recording.sampled import (
    _PER_SOURCE,
    ACT,
    OUT_GRAD_ROW,
    RAW,
    DeviceConstants,
    StepSums,
    count_alive,
)
from gradwatch.recording.stats import batch_moments
from gradwatch.trace import LayerInfo


def _train(
    w: gw.Watch,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    steps: int,
    log: Callable[[int, torch.Tensor], dict[str, torch.Tensor]] = lambda _, loss: {"loss": loss},
) -> list[float]:
    """Train ``steps`` steps, logging ``log(step, loss)`` after each; the losses."""
    losses = []
    for step in range(steps):
        opt.zero_grad()
        loss = model(torch.randn(8, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        w.log(**log(step, loss))
        losses.append(loss.item())
    return losses


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def test_a_logged_tensor_changed_in_place_afterwards_keeps_its_logged_value() -> None:
    """Tensor scalars are written into the buffer at the flush, from a copy taken at log()."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    running = torch.zeros(())
    seen = []

    def log(step: int, _loss: torch.Tensor) -> dict[str, torch.Tensor]:
        running.add_(step)  # the same tensor, changed after each log
        seen.append(running.item())
        return {"running": running}

    with gw.watch(model, opt, flush_every=4) as w:
        _train(w, model, opt, 6, log)
    np.testing.assert_array_equal(w.trace.scalar("running"), seen)


@pytest.fixture
def device_path(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Logged CPU tensors take the accelerator's path (no read at log()); what is kept of
    each until the flush."""
    buffer = importlib.import_module("gradwatch.recording.buffer")
    monkeypatch.setattr(buffer, "_host_readable", lambda t: False)
    kept: list[object] = []
    put = buffer.StepBuffer.put_scalar

    def spy(self: object, slot: int, name: str, value: object) -> None:
        put(self, slot, name, value)
        if isinstance(value, torch.Tensor):  # (not the learning rate: a float)
            kept.append(self._pending[-1][1])  # type: ignore[attr-defined]

    monkeypatch.setattr(buffer.StepBuffer, "put_scalar", spy)
    return kept


def test_on_an_accelerator_the_loss_is_kept_by_reference_not_copied(
    device_path: list[object],
) -> None:
    """The loss (an autograd result, not a view) is read at the flush: no copy kernel at
    log(); its values are exact across windows."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt, flush_every=3) as w:
        losses = _train(w, model, opt, 7)
    assert len(device_path) == 7
    assert all(type(v).__name__ == "_Kept" for v in device_path)
    np.testing.assert_allclose(w.trace.scalar("loss"), losses, rtol=1e-7)


def test_on_an_accelerator_other_tensors_are_copied_at_log(device_path: list[object]) -> None:
    """A running total changed in place after each log(), and a view of a loss, are copied:
    each step keeps the value it was logged with."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    running = torch.zeros(())
    seen = []

    def log(step: int, loss: torch.Tensor) -> dict[str, torch.Tensor]:
        running.add_(step)
        seen.append(running.item())
        return {"running": running, "first": loss.reshape(1)[0]}

    with gw.watch(model, opt, flush_every=4) as w:
        losses = _train(w, model, opt, 6, log)
    assert not any(type(v).__name__ == "_Kept" for v in device_path)
    np.testing.assert_array_equal(w.trace.scalar("running"), seen)
    np.testing.assert_allclose(w.trace.scalar("first"), losses, rtol=1e-7)


def test_on_an_accelerator_a_compiled_regions_loss_is_copied(device_path: list[object]) -> None:
    """A loss returned by a compiled region (a custom autograd Function's output, which under
    CUDA graphs lives in memory the next call overwrites) is copied at log(), not kept."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    compiled = torch.compile(lambda out: out.pow(2).mean(), backend="aot_eager")
    losses, kinds = [], []
    # (a sampled step runs compiled code eagerly: only step 0 is sampled here)
    with gw.watch(model, opt, flush_every=3, sample_every=1000, dense_steps=0) as w:
        for _ in range(4):
            opt.zero_grad()
            loss = compiled(model(torch.randn(8, 4)))
            loss.backward()
            opt.step()
            w.log(loss=loss)
            losses.append(loss.item())
            kinds.append(type(loss.grad_fn).__name__)
    assert kinds[1:] == ["CompiledFunctionBackward"] * 3
    assert [type(v).__name__ for v in device_path[1:]] == ["Tensor"] * 3
    np.testing.assert_allclose(w.trace.scalar("loss"), losses, rtol=1e-7)


def test_on_an_accelerator_a_loss_changed_after_log_is_missing_with_a_warning(
    device_path: list[object],
) -> None:
    """An autograd result written into after log() no longer holds the logged value: that
    step's value is missing (never the later one), and a warning names it and the fix."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def log(step: int, loss: torch.Tensor) -> dict[str, torch.Tensor]:
        if step == 2:
            w.log(loss=loss)
            with torch.no_grad():
                loss.mul_(10)  # after log(): this step's logged value is gone
        return {"other": loss.detach() * 1}

    match = r"'loss' at step 2 was changed in place"
    with pytest.warns(RuntimeWarning, match=match), gw.watch(model, opt, flush_every=4) as w:
        _train(w, model, opt, 5, log)
    loss = w.trace.scalar("loss")
    assert np.isnan(loss[2]) and np.isnan(loss).sum() == 5  # logged at step 2 only


def test_log_time_counts_toward_the_overhead_budget() -> None:
    """``log()`` is the recorder's work: its host time is charged like its hooks'."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt) as w:
        _train(w, model, opt, 2)
        schedule = w._schedule
        ticks = iter(range(1, 10**6))
        schedule.clock = lambda: 0.001 * next(ticks)  # each reading 1 ms after the last
        before = schedule._charged
        w.log(loss=torch.tensor(1.0))
        assert schedule._charged - before == pytest.approx(0.001)


def test_a_name_logged_twice_in_a_step_keeps_the_last_value() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt) as w:

        def log(_step: int, _loss: torch.Tensor) -> dict[str, torch.Tensor]:
            w.log(x=torch.tensor(1.0))
            return {"x": torch.tensor([2.0])}  # one-element tensors of any shape

        _train(w, model, opt, 2, log)
    np.testing.assert_array_equal(w.trace.scalar("x"), [2.0, 2.0])


def test_many_scalar_names_grow_the_buffer_without_losing_pending_values() -> None:
    """More names than the buffer's first width: values logged before it grew stay put."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt, flush_every=5) as w:
        _train(
            w,
            model,
            opt,
            3,
            lambda step, _: {f"s{k}": torch.tensor(float(100 * step + k)) for k in range(12)},
        )
    for k in range(12):
        np.testing.assert_array_equal(w.trace.scalar(f"s{k}"), [k, 100 + k, 200 + k])


def test_logged_loss_is_exact_across_windows_and_with_trace_reads_mid_run() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt, flush_every=3) as w:
        losses = _train(w, model, opt, 4)
        mid = w.trace.scalar("loss")  # a flush in the middle of a window
        losses += _train(w, model, opt, 4)
    np.testing.assert_allclose(mid, losses[:4], rtol=1e-7)
    np.testing.assert_allclose(w.trace.scalar("loss"), losses, rtol=1e-7)


def test_device_constants_are_sent_once_per_distinct_value() -> None:
    consts = DeviceConstants(torch.device("cpu"))
    a = consts.array(np.array([1.0, 2.0]), torch.float64)
    assert consts.array(np.array([1.0, 2.0]), torch.float64) is a
    assert consts.array(np.array([1.0, 3.0]), torch.float64) is not a
    assert consts.array(np.array([1.0, 2.0]), torch.float32).dtype == torch.float32
    idx = consts.index((0, 2))
    assert consts.index((0, 2)) is idx and idx.dtype == torch.long
    for k in range(DeviceConstants._MAX_ENTRIES + 5):  # bounded: starts over when full
        consts.index((k,))
    assert len(consts._cache) <= DeviceConstants._MAX_ENTRIES


def test_step_sums_add_norms_squared_and_scaled_with_every_other_sum_at_once() -> None:
    """A step's contributions are added in one go when read: norms (the accelerator path's
    output-gradient norms, a non-tanh output's norm) squared after their scale, sums as
    they are, contributions to the same row and layer added, alive units counted across
    layers; read twice, later contributions add to the first read."""
    consts = DeviceConstants(torch.device("cpu"))
    sums = StepSums(4, torch.device("cpu"), torch.float64, consts)
    g = torch.tensor([3.0, 4.0, 12.0], dtype=torch.float32)  # outputs' gradient norms
    sums.add_out_grads((0, 2, 3), g, norm=True)
    sums.add_out_grads((2,), torch.tensor([2.0]))  # a sum of squares: 4 more for layer 2
    ys = torch.randn(2, 5, 3, dtype=torch.float64)  # two outputs, 5 inputs x 3 units
    m = batch_moments(ys, "ReLU", "relu_like", -1)
    assert m.rooted and m.varies  # both squared at the read
    sums.add_batch(ACT, (1, 3), m, count=15)
    got = sums.sums()
    assert got[OUT_GRAD_ROW].tolist() == [9.0, 0.0, 16.0 + 2.0, 144.0]
    row = _PER_SOURCE * ACT
    for j, layer in enumerate((1, 3)):
        y = ys[j]
        assert got[row, layer].item() == pytest.approx(y.sum().item())
        assert got[row + 1, layer].item() == pytest.approx(y.square().sum().item())
        assert got[row + 3, layer].item() == pytest.approx(5 * y.mean(0).square().sum().item())
        assert got[row + 4, layer].item() == pytest.approx(15 * y.mean().item() ** 2)
    assert got[_PER_SOURCE * RAW : _PER_SOURCE * (RAW + 1)].abs().sum() == 0
    sums.add_out_grads((0,), torch.tensor([1.0]))
    assert sums.sums()[OUT_GRAD_ROW, 0].item() == 10.0
    alive = {0: torch.tensor([True, False, True]), 2: torch.tensor([0.0, 2.0])}  # 0/1 sums
    counts, units = count_alive(alive, 4, torch.float64, consts)
    assert counts.tolist() == [2.0, 0.0, 1.0, 0.0]
    assert np.isnan(units[[1, 3]]).all() and units[[0, 2]].tolist() == [3.0, 2.0]


def test_sampled_metrics_combined_per_window_equal_a_reference_in_every_window() -> None:
    """Sampled steps in several windows (and a mid-window trace read) each get their own
    activation statistics, equal to the tanh outputs' float64 mean and std."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    outs: list[torch.Tensor] = []
    model[1].register_forward_hook(lambda _m, _a, o: outs.append(o.detach().double()))
    with gw.watch(model, opt, sample_every=2, dense_steps=0, overhead=None, flush_every=3) as w:
        for step in range(7):
            opt.zero_grad()
            model(torch.randn(8, 4)).pow(2).mean().backward()
            opt.step()
            if step == 4:
                _ = w.trace
    t = w.trace
    mean = t.matrix("act_mean")[:, 0]
    for step, out in enumerate(outs):
        if step % 2 == 0:
            assert np.isclose(mean[step], out.mean().item(), rtol=1e-5, atol=1e-8)
            assert np.isclose(t.matrix("act_std")[step, 0], out.std(unbiased=False).item())
        else:
            assert np.isnan(mean[step])


def test_layer_table_entries_equal_dataclass_asdict() -> None:
    info = LayerInfo(
        name="h.0.mlp.c_fc",
        type="Conv1D",
        depth=3,
        num_params=10,
        shapes={"weight": [2, 4], "bias": [2]},
        activation="NewGELUActivation",
        branch="h.0.mlp",
        activation_source="class",
    )
    assert info.to_json() == dataclasses.asdict(info)
    assert LayerInfo.from_json(info.to_json()) == info
    out = info.to_json()
    out["shapes"]["weight"].append(9)  # a copy: the layer's own shapes are unchanged
    assert info.shapes["weight"] == [2, 4]


def test_tensor_scalars_of_any_dtype_and_one_element_shape_are_written_exactly() -> None:
    """A window mixing dtypes (stacked together) and then shapes (written one by one)."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def log(step: int, _loss: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {
            "i": torch.tensor(step, dtype=torch.int64),
            "b": torch.tensor(step % 2 == 0),
            "h": torch.tensor(0.5 + step, dtype=torch.float16),
        }
        if step >= 3:
            out["v"] = torch.tensor([[step * 1.5]])  # a (1, 1) tensor: the other path
        return out

    with gw.watch(model, opt, flush_every=3) as w:
        _train(w, model, opt, 6, log)
    t = w.trace
    np.testing.assert_array_equal(t.scalar("i"), range(6))
    np.testing.assert_array_equal(t.scalar("b"), [1, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(t.scalar("h"), [0.5 + s for s in range(6)])
    np.testing.assert_array_equal(t.scalar("v")[3:], [4.5, 6.0, 7.5])
    assert np.isnan(t.scalar("v")[:3]).all()


def test_logged_cpu_tensors_of_any_dtype_are_kept_without_warnings() -> None:
    """CPU tensors are read at log() (no clone): a loss that requires grad, integer and bool
    tensors and plain numbers all land at their step, with no warning."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def log(step: int, loss: torch.Tensor) -> dict[str, torch.Tensor | float]:
        return {
            "loss": loss,  # requires grad
            "count": torch.tensor(step, dtype=torch.int64),
            "flag": torch.tensor(step % 2 == 0),
            "half": torch.tensor(step / 2, dtype=torch.bfloat16),
            "number": step * 1.5,
        }

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gw.watch(model, opt, flush_every=3, on_finding=lambda f: None) as w:
            losses = _train(w, model, opt, 7, log)  # type: ignore[arg-type]
    assert [str(c.message) for c in caught] == []
    t = w.trace
    np.testing.assert_allclose(t.scalar("loss"), losses, rtol=1e-6)
    np.testing.assert_array_equal(t.scalar("count"), np.arange(7))
    np.testing.assert_array_equal(t.scalar("flag"), np.arange(7) % 2 == 0)
    np.testing.assert_array_equal(t.scalar("half"), np.arange(7) / 2)
    np.testing.assert_array_equal(t.scalar("number"), np.arange(7) * 1.5)
