"""The trace schema: rows to chunk tables and back, and the metadata layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from gradwatch.trace import (
    FORMAT_VERSION,
    LAYER_METRICS,
    LayerInfo,
    RunWriter,
    Trace,
    layer_table,
    load,
    recurrent_table,
    run_meta,
    scalar_table,
    trace_from_tables,
)


def _layers(n: int) -> list[LayerInfo]:
    return [LayerInfo(name=f"l{i}", type="Linear", depth=i, num_params=1) for i in range(n)]


def test_layer_rows_come_back_as_step_by_depth_matrices() -> None:
    """A (steps, metrics, layers) block written with a depth per column reads back, per
    metric, as the (steps, depth) matrix a plain loop over the block builds; NaN stays NaN."""
    rng = np.random.default_rng(0)
    steps = np.array([3, 5, 6])
    depth = np.array([2, 0, 1], dtype=np.int32)  # layer index -> depth
    block = rng.normal(size=(3, len(LAYER_METRICS), 3))
    block[1, 0, 2] = math.nan
    table = layer_table(steps, depth, block)
    assert table.schema.field("step").type == pa.int64()
    assert table.schema.field("layer").type == pa.int32()
    assert all(table.schema.field(m).type == pa.float32() for m in LAYER_METRICS)
    trace = trace_from_tables({"layers": [i.to_json() for i in _layers(3)]}, [table], [], [])
    np.testing.assert_array_equal(trace.steps, steps)
    for m, name in enumerate(LAYER_METRICS):
        expected = np.full((3, 3), math.nan)
        for r in range(3):
            for i in range(3):
                expected[r, depth[i]] = np.float32(block[r, m, i])
        np.testing.assert_array_equal(trace.matrix(name), expected)


def test_a_later_scalar_chunk_wins_for_a_step_and_missing_never_wins() -> None:
    """Two scalar chunks of the same steps: the later value replaces the earlier one, and a
    NaN in the later chunk leaves the earlier value."""
    first = scalar_table(np.array([0, 1]), {"loss": np.array([1.0, 2.0])})
    later = scalar_table(np.array([1, 2]), {"loss": np.array([math.nan, 5.0])})
    assert first.schema.field("step").type == pa.int64()
    assert first.schema.field("loss").type == pa.float64()
    trace = trace_from_tables({"layers": []}, [], [first, later], [])
    np.testing.assert_array_equal(trace.scalar_steps, [0, 1, 2])
    np.testing.assert_array_equal(trace.scalar("loss"), [1.0, 2.0, 5.0])


def test_recurrent_profiles_read_back_per_layer_name() -> None:
    """(step, depth, profile) triples read back as one (steps, T) matrix per layer name."""
    table = recurrent_table(
        [(0, 1, np.array([1.0, 2.0, 3.0])), (4, 1, np.array([4.0, 5.0, 6.0])), (0, 0, np.ones(2))]
    )
    trace = trace_from_tables({"layers": [i.to_json() for i in _layers(2)]}, [], [], [table])
    prof = trace.input_grad_profile("l1")
    np.testing.assert_array_equal(prof.steps, [0, 4])
    np.testing.assert_array_equal(prof.values, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(trace.input_grad_profile("l0").values, [[1, 1]])


def test_run_meta_layout_and_one_format_version(tmp_path: Path) -> None:
    """run_meta puts format_version first, the layer table in depth order and the user's keys
    last; the run directory, and a hand-built trace, carry the same FORMAT_VERSION."""
    layers = [LayerInfo("b", "Linear", 1, 2), LayerInfo("a", "Linear", 0, 3)]
    meta = run_meta(
        status="running",
        created=1.0,
        model={"class": "M"},
        layers=layers,
        config={"every": 1},
        steps_recorded=0,
        frameworks={"torch": "x"},
        extra={"note": 1},
    )
    assert next(iter(meta)) == "format_version" and meta["format_version"] == FORMAT_VERSION
    assert [d["name"] for d in meta["layers"]] == ["a", "b"]
    assert meta["status"] == "running" and list(meta)[-1] == "note"
    assert list(meta["versions"])[:2] == ["gradwatch", "torch"]
    writer = RunWriter(tmp_path / "run")
    writer.write_meta({"layers": []})  # a meta without a version is stamped
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["format_version"] == (
        FORMAT_VERSION
    )
    assert load(tmp_path / "run").meta["format_version"] == FORMAT_VERSION
    hand = Trace.from_arrays(["a"], [0], {"grad_rms": [[1.0]]})
    assert hand.meta["format_version"] == FORMAT_VERSION
