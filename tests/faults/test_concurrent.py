"""Reading a run while it is written: one consistent snapshot, scalars and layer metrics up
to the same step."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.recording.buffer import Sink, StepBuffer
from gradwatch.trace import LayerInfo, RunWriter, TraceError, run_meta


def _meta(status: str) -> dict[str, object]:
    return run_meta(
        status=status, created=0.0, model={}, layers=[LayerInfo("a", "Linear", 0, 1)],
        config={}, steps_recorded=0, frameworks={}, extra={},
    )  # fmt: skip


def test_a_flush_half_written_is_left_out(tmp_path: Path) -> None:
    """The reader lists the directory between the layers and the scalars chunk of a flush:
    before, the layers ran 10 steps ahead of the scalars."""
    writer = RunWriter(tmp_path / "run")
    sink = Sink(writer, _meta)
    sink.start()
    buf = StepBuffer(1, 10, torch.device("cpu"))
    for window in range(3):
        for slot in range(10):
            buf.row_used[slot] = buf.srow_used[slot] = True
            buf.values[slot, 0, 0] = 4.0  # grad_norm sum of squares
        tables = buf.flush([0], (window + 1) * 10)
        for i, (kind, table) in enumerate(tables):
            if window == 2 and i == 1:
                break  # the reader comes here: the last flush wrote its layers chunk only
            sink.emit(kind, table)
    trace = gw.load(tmp_path / "run")
    assert list(trace.steps) == list(range(20)) == list(trace.scalar_steps)
    sink.emit(*tables[1])  # the flush completes
    trace = gw.load(tmp_path / "run")
    assert list(trace.steps) == list(range(30)) == list(trace.scalar_steps)


def test_reader_thread_during_training(tmp_path: Path) -> None:
    """Every trace loaded while training goes on is whole: the same steps in both tables,
    starting at 0 with no gap."""
    run = tmp_path / "run"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    # (overhead=None: the steps are contiguous; a budget may thin the plain steps of 300.)
    w = gw.watch(model, opt, run, flush_every=3, sample_every=4, overhead=None)
    stop = threading.Event()
    seen: list[int] = []
    problems: list[str] = []

    def read() -> None:
        while not stop.is_set():
            try:
                trace = gw.load(run)
            except TraceError as exc:  # only before the first step's meta.json
                problems.append(str(exc))
                continue
            steps = trace.steps
            if list(steps) != list(range(len(steps))) or not np.array_equal(
                steps, trace.scalar_steps
            ):
                problems.append(f"{steps[-3:]} vs {trace.scalar_steps[-3:]}")
            if len(steps):
                assert trace.matrix("grad_rms").shape == (len(steps), 2)
            seen.append(len(steps))

    reader = threading.Thread(target=read)
    reader.start()
    x = torch.randn(8, 4)
    try:
        for _ in range(300):
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    finally:
        w.close()
        stop.set()
        reader.join()
    assert not problems, problems[:5]
    assert len(set(seen)) > 3  # the reader did see the run grow
    assert len(gw.load(run).steps) == 300


def test_overwritten_after_load_is_an_error_not_mixed_data(tmp_path: Path) -> None:
    """A metric is read on first use; if the run dir was replaced meanwhile, say so."""
    from ._helpers import train

    run = tmp_path / "run"
    train(run, 12, flush_every=5)
    trace = gw.load(run)
    train(run, 12, flush_every=5, overwrite=True)
    with pytest.raises(TraceError, match="Load the run again"):
        trace.matrix("grad_rms")


def test_lazy_columns_equal_the_whole_tables(tmp_path: Path) -> None:
    """Column projection gives the matrices a naive whole-table pivot gives (pandas)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from ._helpers import train

    run = tmp_path / "run"
    train(run, 25, flush_every=7, sample_every=3)
    trace = gw.load(run)
    frame = pa.concat_tables(
        [pq.read_table(p) for p in sorted(run.glob("layers-*.parquet"))]
    ).to_pandas()
    for metric in ("grad_rms", "act_mean", "update_ratio", "nonfinite"):
        ref = frame.pivot_table(index="step", columns="layer", values=metric, dropna=False)
        ref = ref.reindex(index=trace.steps, columns=range(len(trace.layers)))
        np.testing.assert_array_equal(trace.matrix(metric), ref.to_numpy(np.float64))
    assert isinstance(trace.matrix("grad_rms"), np.ndarray)
    assert pd is not None


def test_in_memory_trace_taken_mid_run_is_a_snapshot() -> None:
    """``w.trace`` without a run_dir, taken mid-run, keeps its steps while training goes on
    (its metrics are built on first use, from the chunks of that moment)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(8, 4)
    with gw.watch(model, opt, flush_every=4) as w:
        for step in range(20):
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step == 9:
                early = w.trace
    assert early.matrix("grad_rms").shape == (10, 2)
    np.testing.assert_array_equal(early.matrix("grad_rms"), w.trace.matrix("grad_rms")[:10])
