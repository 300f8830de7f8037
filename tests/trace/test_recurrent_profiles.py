"""The recurrent table's two profile kinds: written, read back, stored, and old chunks read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import gradwatch as gw
from gradwatch.trace import (
    LayerInfo,
    Trace,
    TraceError,
    recurrent_table,
    trace_from_tables,
)


def _meta() -> dict[str, object]:
    layers = [LayerInfo("rnn", "RNN", 0, 1, recurrent=True), LayerInfo("head", "Linear", 1, 1)]
    return {"layers": [info.to_json() for info in layers]}


def test_an_old_chunk_without_the_profile_column_reads_as_whole() -> None:
    """A chunk written before the ``profile`` column existed is the whole loss's profile, also
    when concatenated with a newer chunk holding last-position rows."""
    old = pa.table(
        {
            "step": np.array([0, 0], dtype=np.int64),
            "layer": np.array([0, 0], dtype=np.int32),
            "t": np.array([0, 1], dtype=np.int32),
            "input_grad_norm": np.array([1.0, 2.0], dtype=np.float32),
        }
    )
    new = recurrent_table([(3, 0, np.array([5.0, 6.0]))], "last_position")
    trace = trace_from_tables(_meta(), [], [], [old, new])
    assert trace.profile_kinds("rnn") == ("whole", "last_position")
    whole = trace.input_grad_profile("rnn")
    last = trace.input_grad_profile("rnn", kind="last_position")
    np.testing.assert_array_equal(whole.steps, [0])
    np.testing.assert_array_equal(whole.values, [[1.0, 2.0]])
    np.testing.assert_array_equal(last.steps, [3])
    np.testing.assert_array_equal(last.values, [[5.0, 6.0]])
    assert (whole.kind, last.kind) == ("whole", "last_position")


def test_unknown_kinds_are_refused_with_the_fix() -> None:
    """A kind this version does not know (a newer trace) and a bad ``kind=`` argument say so."""
    table = recurrent_table([(0, 0, np.ones(2))]).set_column(
        4, "profile", pa.array(["future", "future"])
    )
    with pytest.raises(TraceError, match="upgrade gradwatch"):
        trace_from_tables(_meta(), [], [], [table])
    with pytest.raises(ValueError, match="`profile`"):
        recurrent_table([(0, 0, np.ones(2))], "future")  # type: ignore[arg-type]
    trace = Trace.from_arrays(["rnn"], [0], {}, recurrent={"rnn": ([0], np.ones((1, 3)))})
    with pytest.raises(ValueError, match="`kind`"):
        trace.input_grad_profile("rnn", kind="last")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="'last_position' input-gradient profile"):
        trace.input_grad_profile("rnn", kind="last_position")


def test_both_kinds_survive_the_run_directory_and_pandas(tmp_path: Path) -> None:
    """A trace with both kinds saved by the recorder's store reads back equal, and the tidy
    frame labels each row with its profile kind."""
    import torch
    from torch import nn

    rnn = nn.GRU(3, 4)
    with gw.watch(rnn, run_dir=tmp_path / "run") as w:
        out, _ = rnn(torch.randn(6, 2, 3))
        out.sum().backward()
        w.step()
    loaded = gw.load(tmp_path / "run")
    for kind in ("whole", "last_position"):
        a = w.trace.input_grad_profile("", kind=kind)  # type: ignore[arg-type]
        b = loaded.input_grad_profile("", kind=kind)  # type: ignore[arg-type]
        np.testing.assert_array_equal(a.steps, b.steps)
        np.testing.assert_array_equal(a.values, b.values)
    frame = loaded.to_pandas().recurrent
    assert sorted(frame["profile"].unique()) == ["last_position", "whole"]
    assert (frame["profile"] == "last_position").sum() == 6
