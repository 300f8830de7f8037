"""A full disk never stops training: recording stops with one warning naming the run dir,
meta.json says why, the steps written before load; ``strict=True`` raises instead."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import gradwatch as gw
from gradwatch.trace import store

from ._helpers import train


def _fill_after(monkeypatch: pytest.MonkeyPatch, chunks: int) -> None:
    """Chunk writes succeed ``chunks`` times, then the disk is full (a partial temp file is
    written first, as a real full disk does)."""
    real = pq.write_table
    calls = [0]

    def write(table: Any, where: Any, **kwargs: Any) -> None:
        calls[0] += 1
        if calls[0] > chunks:
            Path(where).write_bytes(b"PAR1 partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(table, where, **kwargs)

    monkeypatch.setattr(store.pq, "write_table", write)


def _no_temporaries(run: Path) -> None:
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_full_disk_mid_run_stops_recording_not_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    _fill_after(monkeypatch, chunks=4)  # two flushes of (layers, scalars)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w = train(run, 40, flush_every=10)  # would raise from optimizer.step() before
    said = [str(c.message) for c in caught if "stopped recording" in str(c.message)]
    assert len(said) == 1 and str(run) in said[0] and "disk full" in said[0]
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "stopped" and meta["reason"].startswith("disk full")
    _no_temporaries(run)
    trace = gw.load(run)
    assert list(trace.steps) == list(range(20)) == list(trace.scalar_steps)
    # Steps 20-29 were in the flush that failed; recording stopped there, training went on.
    assert w.num_steps == 30


def test_strict_raises_from_the_step_that_flushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    _fill_after(monkeypatch, chunks=2)
    with pytest.raises(OSError, match=r"cannot write .*run/layers-000001\.parquet"):
        train(run, 40, flush_every=10, strict=True)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "stopped" and "disk full" in meta["reason"]
    _no_temporaries(run)
    assert list(gw.load(run).steps) == list(range(10))


def test_full_disk_at_watch_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first meta.json cannot be written: an OSError naming it, no .meta.json.tmp, no
    directory, no hook."""
    real_open = Path.open

    def full(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if self.name == ".meta.json.tmp":
            fh = real_open(self, mode, *args, **kwargs)
            fh.close()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full)
    run = tmp_path / "run"
    with pytest.raises(OSError, match=r"cannot write .*run/meta\.json.*No space left"):
        train(run, 3)
    assert not run.exists()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 96 KiB tmpfs, when this process may mount one (root in a container that allows it)."""
    where = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(where)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield where
    finally:
        # Lazy: detached even if a file on it is still open (a failed write not yet collected).
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_real_full_disk(tiny_disk: Path) -> None:
    run = tiny_disk / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w = train(run, 400, flush_every=5)
    said = [str(c.message) for c in caught if "stopped recording" in str(c.message)]
    assert len(said) == 1 and str(run) in said[0] and "disk full" in said[0], said
    _no_temporaries(run)
    trace = gw.load(run)
    n = len(trace.steps)
    assert 0 < n < 400 and n % 5 == 0 and list(trace.steps) == list(range(n))
    assert list(trace.scalar_steps) == list(range(n))
    assert w.num_steps == n + 5  # the window whose flush failed is lost, then it stopped
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] in ("stopped", "running")  # "running" only if not even meta fit
    if meta["status"] == "stopped":
        assert meta["reason"].startswith("disk full")
