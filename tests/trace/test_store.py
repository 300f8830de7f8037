"""The trace store: hand-built traces, tidy export, and damaged run directories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import gradwatch as gw
from gradwatch.trace import LayerInfo, Trace, TraceError


def _run(tmp_path: Path, steps: int = 12, flush_every: int = 4) -> Path:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = tmp_path / "run"
    with gw.watch(model, opt, run_dir=run, flush_every=flush_every) as w:
        for _ in range(steps):
            opt.zero_grad()
            loss = model(torch.randn(5, 3)).pow(2).mean()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    return run


def test_from_arrays_checks_shapes_and_names_the_fix() -> None:
    """A metric whose shape is not (steps, layers) is refused with the expected shape."""
    with pytest.raises(ValueError, match=r"expected \(steps, layers\) = \(2, 3\)"):
        Trace.from_arrays(["a", "b", "c"], [0, 1], {"grad_rms": np.ones((3, 2))})
    with pytest.raises(ValueError, match="scalar 'loss'"):
        Trace.from_arrays(["a"], [0, 1], {}, scalars={"loss": [1.0]})


def test_matrix_and_to_pandas_agree() -> None:
    """to_pandas() holds the same numbers as matrix(), one row per (step, layer)."""
    layers = [LayerInfo(name=f"l{i}", type="Linear", depth=i, num_params=1) for i in range(3)]
    mat = np.arange(6.0).reshape(2, 3)
    mat[1, 2] = np.nan
    t = Trace.from_arrays(
        layers,
        [5, 9],
        {"grad_rms": mat},
        scalars={"loss": [1.0, 0.5]},
        recurrent={"l0": ([5], np.array([[1.0, 2.0, 3.0]]))},
    )
    frames = t.to_pandas()
    got = frames.layers.pivot(index="step", columns="layer", values="grad_rms")
    np.testing.assert_array_equal(got[["l0", "l1", "l2"]].to_numpy(), mat)
    assert frames.scalars["loss"].tolist() == [1.0, 0.5]
    assert frames.recurrent["input_grad_norm"].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(KeyError, match="has no metric 'nope'"):
        t.matrix("nope")
    steps, rows = t.measured("grad_rms")
    assert steps.tolist() == [5, 9] and rows.shape == (2, 3)


def test_truncated_last_chunk_warns_and_keeps_the_readable_steps(tmp_path: Path) -> None:
    """A damaged last chunk is skipped with a warning; earlier steps stay readable."""
    run = _run(tmp_path)
    chunks = sorted(run.glob("layers-*.parquet"))
    chunks[-1].write_bytes(chunks[-1].read_bytes()[:40])
    with pytest.warns(RuntimeWarning, match="unreadable last chunk"):
        trace = gw.load(run)
    assert trace.steps.tolist() == list(range(8))


def test_damaged_middle_chunk_is_a_clear_error(tmp_path: Path) -> None:
    """An unreadable chunk followed by others is reported as damage, naming the file."""
    run = _run(tmp_path)
    first = sorted(run.glob("layers-*.parquet"))[0]
    first.write_bytes(b"garbage")
    with pytest.raises(TraceError, match="layers-000000.parquet"):
        gw.load(run)


def test_newer_format_and_empty_meta_are_clear_errors(tmp_path: Path) -> None:
    """A run from a newer format says to upgrade; a meta.json without version is refused."""
    run = _run(tmp_path)
    meta = json.loads((run / "meta.json").read_text())
    meta["format_version"] = 99
    (run / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(TraceError, match="newer.*Upgrade gradwatch"):
        gw.load(run)
    (run / "meta.json").write_text("{}")
    with pytest.raises(TraceError, match="format_version"):
        gw.load(run)
    (run / "meta.json").write_text("{not json")
    with pytest.raises(TraceError, match="not valid UTF-8 JSON"):
        gw.load(run)


def test_run_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """run_dir pointing at a file is an error naming the argument."""
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="`run_dir`"):
        gw.watch(torch.nn.Linear(2, 2), run_dir=f)
    with pytest.raises(TraceError, match="is a file"):
        gw.load(f)
