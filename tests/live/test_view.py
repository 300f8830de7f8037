"""``gradwatch watch``'s snapshot of a run being written: the findings it shows never speak of
steps its trace does not hold yet."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import gradwatch as gw
from gradwatch.live import online, read_findings, view

from ._helpers import small_model, train


def _record(run: Path, steps: int) -> None:
    """The same run, stopped after ``steps`` steps: a NaN at step 35, a flush every 10."""
    model, opt = small_model()
    with gw.watch(model, opt, run, flush_every=10, on_finding=lambda f: None) as w:
        train(w, model, opt, steps, nan_at=35)


def test_a_flush_between_the_two_reads_cannot_show_a_finding_ahead_of_the_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer flushes (data, then findings) between the snapshot's two reads: whichever
    comes first reads the run at step 30, the second at step 40, where the NaN of step 35 is
    found. Findings are read first, so a NaN finding comes with a trace that holds step 35."""
    monkeypatch.setattr(online, "MAX_SHARE", 0.0)  # toy steps: check at every flush
    before, after, run = tmp_path / "30", tmp_path / "40", tmp_path / "run"
    _record(before, 30)
    _record(after, 40)
    nan_found = {r["rule"] for r in read_findings(after)} - {
        r["rule"] for r in read_findings(before)
    }
    assert "nonfinite_gradient" in nan_found  # the flush of steps 30-39 finds the NaN
    shutil.copytree(before, run)
    flushed = False

    def then_flush(read: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            nonlocal flushed
            out = read(*args, **kwargs)
            if not flushed:  # the writer's next flush lands right after the first read
                flushed = True
                shutil.copytree(after, run, dirs_exist_ok=True)
            return out

        return wrapped

    monkeypatch.setattr(view, "read_findings", then_flush(view.read_findings))
    monkeypatch.setattr(view, "load", then_flush(view.load))
    snap = view.snapshot(run)
    assert flushed
    if "nonfinite_gradient" in {f["rule"] for f in snap.findings}:
        assert snap.steps >= 36, f"a NaN finding of step 35 beside a trace of {snap.steps} steps"
