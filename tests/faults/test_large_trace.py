"""Loading is bounded by what is asked: ``gw.load`` reads only the row index of the layer
chunks, and a metric's column is read (and its matrix built) on its first ``matrix()``."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradwatch as gw
from gradwatch.trace import store

from ._helpers import train


def _bench_writer() -> Any:
    import importlib.util

    path = Path(__file__).parents[2] / "benchmarks" / "trace_load.py"
    spec = importlib.util.spec_from_file_location("trace_load", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_trace


def test_load_reads_only_the_index_then_each_asked_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    train(run, 20, flush_every=5)
    asked: list[tuple[str, tuple[str, ...] | None]] = []
    real = store.pq.read_table

    def spy(source: Any, columns: Any = None, **kwargs: Any) -> Any:
        asked.append((Path(source).name.split("-")[0], tuple(columns) if columns else None))
        return real(source, columns=columns, **kwargs)

    monkeypatch.setattr(store.pq, "read_table", spy)
    trace = gw.load(run)
    layer_reads = {cols for kind, cols in asked if kind == "layers"}
    assert layer_reads == {("step", "layer")} and len(asked) == 8  # 4 layers + 4 scalars
    asked.clear()
    trace.matrix("grad_rms")
    trace.matrix("grad_rms")  # built once, then kept
    assert asked == [("layers", ("grad_rms",))] * 4
    assert "act_mean" in trace.metrics and trace.has_metric("act_mean")


def test_memory_of_load_is_the_index_not_the_matrices(tmp_path: Path) -> None:
    """200 layers x 2000 steps: eleven float64 matrices would be 35 MB (11 x 3.2 MB); load
    allocates (in numpy) about the row index, and one matrix() call about one matrix."""
    run = tmp_path / "big"
    _bench_writer()(run, 200, 2000)
    one_matrix = 200 * 2000 * 8
    tracemalloc.start()
    trace = gw.load(run)
    load_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    mat = trace.matrix("grad_rms")
    matrix_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # The row index: int64 step, layer and row-position arrays, one matrix's size each.
    assert load_peak < 4 * one_matrix, load_peak / 1e6
    assert matrix_peak < 4 * one_matrix, matrix_peak / 1e6
    assert mat.shape == (2000, 200) and np.isfinite(mat).all()
    # Against the writer's own formula: the profile exp(linspace(-12, 0)) times noise * 2.
    ratio = mat[:, 0] / mat[:, -1]
    assert np.allclose(np.median(ratio), np.exp(-12.0), rtol=0.1)
