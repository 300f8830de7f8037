"""Loading damaged or foreign run directories gives one clear TraceError, never a deep traceback."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gradwatch.trace import LayerInfo, RunWriter, TraceError, load


def _good_run(path: Path, chunks: int = 3) -> Path:
    """A run of 1 layer with `chunks` chunks of 5 steps each (layers and scalars)."""
    w = RunWriter(path)
    w.write_meta({"layers": [LayerInfo("a", "Linear", 0, 1).to_json()]})
    for c in range(chunks):
        steps = np.arange(c * 5, c * 5 + 5)
        w.write_chunk(
            "layers",
            pa.table(
                {"step": steps, "layer": np.zeros(5, np.int64), "grad_rms": np.ones(5, np.float32)}
            ),
        )
        w.write_chunk("scalars", pa.table({"step": steps, "loss": np.ones(5)}))
    return path


def test_missing_and_empty_run_dirs(tmp_path: Path) -> None:
    """A path that does not exist, and an empty directory, are TraceErrors that say so."""
    with pytest.raises(TraceError, match="does not exist"):
        load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TraceError, match="no meta.json"):
        load(tmp_path / "empty")


def test_newer_format_asks_for_an_upgrade(tmp_path: Path) -> None:
    """A run written in a newer trace format names both versions and the upgrade command."""
    run = _good_run(tmp_path / "run")
    meta = json.loads((run / "meta.json").read_text())
    meta["format_version"] = 99
    (run / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(TraceError, match=r"format 99.*pip install -U gradwatch"):
        load(run)


@pytest.mark.parametrize("keep_bytes", [0, 50])
def test_truncated_last_chunk_warns_and_loads_the_rest(tmp_path: Path, keep_bytes: int) -> None:
    """A cut-off last chunk is skipped with a warning; the 10 steps before it load."""
    run = _good_run(tmp_path / "run")
    last = run / "layers-000002.parquet"
    last.write_bytes(last.read_bytes()[:keep_bytes])
    with pytest.warns(RuntimeWarning, match="skipping unreadable last chunk"):
        trace = load(run)
    assert list(trace.steps) == list(range(10))
    assert len(trace.scalar_steps) == 15  # the scalar chunks were intact


def test_truncated_middle_chunk_is_an_error(tmp_path: Path) -> None:
    """A damaged chunk followed by good ones is an error (data would be silently lost)."""
    run = _good_run(tmp_path / "run")
    mid = run / "layers-000001.parquet"
    mid.write_bytes(mid.read_bytes()[:50])
    with pytest.raises(TraceError, match="later chunks exist"):
        load(run)


def test_meta_that_is_not_an_object(tmp_path: Path) -> None:
    """A meta.json holding a JSON list is refused with a TraceError, not an AttributeError."""
    run = _good_run(tmp_path / "run")
    (run / "meta.json").write_text("[1, 2]")
    with pytest.raises(TraceError, match="JSON list"):
        load(run)


@pytest.mark.parametrize(
    "bad_chunk",
    [
        {"layer": np.zeros(5, np.int64), "grad_rms": np.ones(5, np.float32)},  # no step column
        {"step": np.arange(15, 20), "layer": np.zeros(5, np.int64), "grad_rms": ["x"] * 5},
    ],
)
def test_chunks_that_do_not_fit_together(tmp_path: Path, bad_chunk: dict[str, object]) -> None:
    """A chunk with a missing column or a changed type is a TraceError naming the run dir."""
    run = _good_run(tmp_path / "run")
    pq.write_table(pa.table(bad_chunk), run / "layers-000003.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy cast warning on the way either
        with pytest.raises(TraceError, match=r"inconsistent|no 'step' column"):
            load(run)


def test_malformed_layer_table(tmp_path: Path) -> None:
    """A layer entry missing its fields is a TraceError, not a KeyError from deep inside."""
    run = _good_run(tmp_path / "run")
    meta = json.loads((run / "meta.json").read_text())
    meta["layers"] = [{"name": "a"}]
    (run / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(TraceError, match="inconsistent"):
        load(run)
