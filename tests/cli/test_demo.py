"""`gradwatch demo` runs end to end: record, diagnose, remedy, compare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gradwatch as gw
from gradwatch.cli.main import main
from gradwatch.lab.demo import format_ratio


def test_demo_records_a_run_and_shows_vanishing_gradients(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reduced demo writes loadable runs, diagnoses the baseline and prints the comparison
    table, whose baseline ratio is the recorded first/last layer gradient RMS."""
    rc = main(["demo", "--out", str(tmp_path), "--steps", "20", "--depth", "5", "--no-report"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "2. Diagnosis" in out and "4. Comparison" in out and "layer-wise pretraining" in out
    trace = gw.load(tmp_path / "baseline")
    assert len(trace.layers) == 5
    assert trace.steps.tolist() == list(range(20))
    rms = trace.matrix("grad_rms")
    ratio = float(np.median(rms[:, 0] / rms[:, -1]))
    baseline_line = next(line for line in out.splitlines() if line.startswith("baseline: sigmoid"))
    assert format_ratio(ratio) in baseline_line


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad option value gives a one-line error and exit code 2, not a traceback."""
    assert main(["demo", "--depth", "1"]) == 2
    assert "--depth" in capsys.readouterr().err
