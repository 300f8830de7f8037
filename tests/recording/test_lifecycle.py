"""Recording never changes training, cleans up after itself, and refuses bad input clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import gradwatch as gw
from gradwatch.recording.arguments import check_flush_window
from gradwatch.recording.buffer import buffer_bytes_per_step
from gradwatch.recording.sampled import WindowSums
from gradwatch.trace import TraceError


def _model(seed: int = 0, act: type[nn.Module] = nn.Tanh, depth: int = 4) -> nn.Sequential:
    torch.manual_seed(seed)
    mods: list[nn.Module] = [nn.Linear(5, 8), act()]
    for _ in range(depth - 2):
        mods += [nn.Linear(8, 8), act()]
    mods.append(nn.Linear(8, 3))
    return nn.Sequential(*mods)


def _train(
    model: nn.Module, opt: torch.optim.Optimizer, steps: int, accumulate: int, w: gw.Watch | None
) -> None:
    gen = torch.Generator().manual_seed(7)
    for _ in range(steps):
        opt.zero_grad()
        for _ in range(accumulate):
            x = torch.randn(6, 5, generator=gen)
            loss = model(x).pow(2).mean() / accumulate
            loss.backward()
        opt.step()
        if w is not None:
            w.log(loss=loss)


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("accumulate", [1, 3])
def test_recording_leaves_training_bitwise_identical(opt_name: str, accumulate: int) -> None:
    """Parameters after N steps are bitwise equal with and without watch (SGD/Adam, accumulation)."""
    results = []
    for watched in (False, True):
        model = _model()
        opt = (
            torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            if opt_name == "sgd"
            else torch.optim.Adam(model.parameters(), lr=0.01)
        )
        if watched:
            with gw.watch(model, opt, sample_every=2) as w:
                _train(model, opt, 7, accumulate, w)
            assert w.num_steps == 7
        else:
            _train(model, opt, 7, accumulate, None)
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


@settings(max_examples=12, deadline=None)
@given(
    depth=st.integers(2, 5),
    act=st.sampled_from([nn.Tanh, nn.ReLU, nn.Sigmoid, nn.GELU]),
    sample_every=st.integers(1, 3),
    every=st.integers(1, 3),
    seed=st.integers(0, 1000),
)
def test_recording_never_changes_a_gradient(
    depth: int, act: type[nn.Module], sample_every: int, every: int, seed: int
) -> None:
    """Gradients computed under watch (any settings) equal those computed without it."""
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(seed))
    ref = _model(seed, act, depth)
    ref(x).pow(2).sum().backward()
    model = _model(seed, act, depth)
    with gw.watch(model, sample_every=sample_every, every=every, overhead=None) as w:
        model(x).pow(2).sum().backward()
        w.step()
    for a, b in zip(ref.parameters(), model.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)


def _hook_count(model: nn.Module, opt: torch.optim.Optimizer | None = None) -> int:
    n = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    if opt is not None:
        n += len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks)
    return n


def test_hooks_are_removed_on_close_exit_and_error_and_model_can_be_watched_again() -> None:
    """close(), leaving `with`, and an exception in the loop all remove every hook."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert _hook_count(model, opt) == 0
    w = gw.watch(model, opt)
    assert _hook_count(model, opt) > 0
    w.close()
    assert _hook_count(model, opt) == 0
    with gw.watch(model, opt):
        _train(model, opt, 2, 1, None)
    assert _hook_count(model, opt) == 0
    with pytest.raises(RuntimeError, match="boom"), gw.watch(model, opt) as w2:
        _train(model, opt, 3, 1, None)
        raise RuntimeError("boom")
    assert _hook_count(model, opt) == 0
    assert w2.trace.steps.tolist() == [0, 1, 2]
    with gw.watch(model, opt) as w3:
        _train(model, opt, 2, 1, w3)
    assert len(w3.trace.steps) == 2


def test_every_and_sample_every_choose_the_recorded_steps() -> None:
    """every=3 records steps 0,3,6,9 and sampled steps; sampled metrics only on sampled steps."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gw.watch(
        model, opt, every=3, sample_every=4, flush_every=5, dense_steps=0, overhead=None
    ) as w:
        _train(model, opt, 10, 1, w)
    t = w.trace
    assert t.steps.tolist() == [0, 3, 4, 6, 8, 9]
    steps, _ = t.measured("act_std")
    assert steps.tolist() == [0, 4, 8]
    assert t.scalar_steps.tolist() == list(range(10))
    assert np.isfinite(t.scalar("loss")).all()


def test_run_dir_and_memory_traces_are_identical(tmp_path: Path) -> None:
    """A trace read back from disk equals the in-memory one, across several flushes."""
    traces = []
    for run_dir in (None, tmp_path / "run"):
        model = _model()
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        with gw.watch(model, opt, run_dir=run_dir, flush_every=4, sample_every=3) as w:
            _train(model, opt, 11, 2, w)
        traces.append(w.trace if run_dir is None else gw.load(run_dir))
    mem, disk = traces
    assert mem.layer_names == disk.layer_names
    for m in mem.metrics:
        np.testing.assert_array_equal(mem.matrix(m), disk.matrix(m))
    np.testing.assert_array_equal(mem.scalar("loss"), disk.scalar("loss"))
    assert disk.meta["status"] == "complete"
    assert len(list((tmp_path / "run").glob("layers-*.parquet"))) == 3


def test_grad_scaler_skipped_steps_are_recorded_as_skipped() -> None:
    """A step GradScaler skips (inf gradient) is recorded with skipped=1 and the bad layer."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    with gw.watch(model, opt, scaler=scaler) as w:
        for step in range(3):
            opt.zero_grad()
            loss = model(torch.randn(4, 5)).pow(2).mean()
            scaler.scale(loss).backward()
            if step == 1:
                model[2].weight.grad[0, 0] = float("inf")
            scaler.step(opt)
            scaler.update()
    assert "step" not in vars(scaler)  # the wrapper is gone
    t = w.trace
    np.testing.assert_array_equal(t.scalar("skipped"), [0, 1, 0])
    assert t.matrix("nonfinite")[1].tolist() == [0, 1, 0, 0]


def test_bad_arguments_get_clear_errors(tmp_path: Path) -> None:
    """Errors name the argument, the bad value and the fix."""
    model = _model()
    with pytest.raises(TypeError, match="`model`.*Module"):
        gw.watch("not a model")  # type: ignore[arg-type]
    for arg in ("every", "sample_every"):
        with pytest.raises(ValueError, match=f"`{arg}`.*0"):
            gw.watch(model, **{arg: 0})
    with pytest.raises(ValueError, match="no parameters"):
        gw.watch(nn.ReLU())
    with torch.device("meta"):
        deferred = _model()
    with pytest.raises(ValueError, match="`model`.*'0.weight' is on the meta device.*to_empty"):
        gw.watch(deferred)
    assert _hook_count(deferred) == 0
    # The window's buffers are allocated up front: a huge one is refused, naming the most that
    # fits (4 layers: 13 statistics x 4 bytes, 8 scalars x 8 bytes and 18 activation sums x 8
    # bytes a step, 848 bytes: 256 MiB / 848 = 316551 steps).
    with pytest.raises(ValueError, match=r"`flush_every`=10000000 .*7\.9 GiB.*<= 316551.*None"):
        gw.watch(model, flush_every=10**7, run_dir=tmp_path / "huge")
    assert _hook_count(model) == 0 and not (tmp_path / "huge").exists()
    check_flush_window(316_551, 4, torch.device("cpu"))  # the most that fits is allowed
    with pytest.raises(ValueError, match="<= 316551"):
        check_flush_window(316_552, 4, torch.device("cpu"))
    other = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="`optimizer`.*not in `model`"):
        gw.watch(model, torch.optim.SGD(other.parameters(), lr=0.1))
    run = tmp_path / "r"
    gw.watch(model, run_dir=run).close()
    with pytest.raises(FileExistsError, match="already holds a gradwatch run.*overwrite=True"):
        gw.watch(model, run_dir=run)
    gw.watch(model, run_dir=run, overwrite=True).close()
    assert _hook_count(model) == 0


def test_the_window_check_counts_the_bytes_a_window_really_holds() -> None:
    """``check_flush_window``'s bytes per step are those of the tensors a window of sampled
    steps keeps on the device: the step buffer and the activation sums."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    window = 6
    with gw.watch(model, opt, flush_every=window, sample_every=1) as w:
        _train(model, opt, window - 1, 1, w)  # a full window less one: nothing flushed yet
        buf, kept = w._buffer, w._sampler._window._kept
        assert len(kept) == window - 1
        held = buf.values.nbytes + buf.scalars.nbytes + sum(t.nbytes for t in kept.values())
    per_step = buffer_bytes_per_step(4, buf.device)
    per_step += WindowSums.bytes_per_step(4, buf.sdtype)
    # (the last step's activation sums are kept at that step's beginning)
    assert held == window * per_step - WindowSums.bytes_per_step(4, buf.sdtype)


def test_all_frozen_model_records_nothing_and_says_so() -> None:
    """A model whose parameters are all frozen warns and yields an empty trace."""
    model = _model()
    model.requires_grad_(False)
    with pytest.warns(UserWarning, match="frozen"), gw.watch(model) as w:
        model(torch.randn(2, 5))
        w.step()
    assert len(w.trace) == 0
    assert w.trace.layers == ()


def test_step_is_refused_when_an_optimizer_records_the_steps() -> None:
    """Calling w.step() with an optimizer would double count, so it raises."""
    model = _model()
    with (
        gw.watch(model, torch.optim.SGD(model.parameters(), lr=0.1)) as w,
        pytest.raises(RuntimeError, match="optimizer"),
    ):
        w.step()


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, torch, gradwatch as gw
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    # overhead=None: every step keeps its row (the budget thins plain steps' statistics
    # after the first ~100, so the rows a kill leaves would not be contiguous then).
    w = gw.watch(model, opt, run_dir=sys.argv[1], flush_every=5, overhead=None)
    step = 0
    while True:
        opt.zero_grad()
        loss = model(torch.randn(8, 5)).pow(2).mean()
        loss.backward()
        opt.step()
        w.log(loss=loss)
        step += 1
        if step == 23:
            print("READY", flush=True)
    """
)


def test_killed_run_leaves_a_readable_run_dir(tmp_path: Path) -> None:
    """SIGKILL mid-training leaves a run dir that load() reads, with every flushed step."""
    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(run)], stdout=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no damaged chunk may exist
        trace = gw.load(run)
    assert trace.meta["status"] == "running"
    steps = trace.steps
    assert len(steps) >= 20 and len(steps) % 5 == 0
    np.testing.assert_array_equal(steps, np.arange(len(steps)))
    assert np.isfinite(trace.matrix("grad_norm")).all()
    # A chunk being written at the kill may remain under its temporary name; load ignores it.
    assert all(p.name.startswith(".") for p in run.glob("*.tmp"))


def test_load_reports_missing_and_foreign_directories(tmp_path: Path) -> None:
    """load() on a missing or non-run directory raises TraceError with the path."""
    with pytest.raises(TraceError, match="does not exist"):
        gw.load(tmp_path / "nope")
    with pytest.raises(TraceError, match="no gradwatch run"):
        gw.load(tmp_path)


def test_outputs_kept_for_an_unfinished_sampled_step_are_released_on_close() -> None:
    """A forward on a sampled step keeps its outputs until the step; closing before the step
    drops every reference, so the tensors are freed."""
    import weakref

    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    w = gw.watch(model)
    out = model(torch.randn(3, 4))
    kept = [weakref.ref(item.y) for item in w._sampler.step.pending]
    assert kept, "the sampled step 0 keeps its outputs"
    del out
    w.close()
    assert all(ref() is None for ref in kept)
