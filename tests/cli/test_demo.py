"""`gradwatch demo` runs end to end and prints the per-layer gradient table."""

from __future__ import annotations

from pathlib import Path

import pytest

import gradwatch as gw
from gradwatch.cli.main import main


def test_demo_records_a_run_and_shows_vanishing_gradients(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reduced demo writes a loadable run whose first layer gets far less gradient."""
    rc = main(["demo", "--out", str(tmp_path), "--steps", "20", "--depth", "10"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "median grad RMS" in out
    trace = gw.load(tmp_path / "sigmoid-mlp")
    assert len(trace.layers) == 10
    assert trace.steps.tolist() == list(range(20))


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad option value gives a one-line error and exit code 2, not a traceback."""
    assert main(["demo", "--depth", "1"]) == 2
    assert "--depth" in capsys.readouterr().err
