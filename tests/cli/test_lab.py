"""``gradwatch lab`` and ``gradwatch demo`` through the command line entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import gradwatch as gw
from gradwatch.cli.main import main

TINY = """
name = "tiny"
steps = 5
batch_size = 16
[model]
kind = "mlp"
depth = 2
width = 4
[task]
name = "spirals"
n_train = 64
n_test = 32
"""


def test_lab_run_writes_a_run_and_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lab run --format json` trains the config into --out and prints its result."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    assert main(["lab", "run", str(cfg), "--out", str(tmp_path / "r"), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 5 and result["task"] == "spirals"
    assert len(gw.load(tmp_path / "r").steps) == 5


def test_lab_run_invalid_config_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid config exits 2 with the field and allowed values, before training."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text(TINY.replace('kind = "mlp"\ndepth = 2\nwidth = 4', 'kind = "recurrent"'))
    assert main(["lab", "run", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "model.kind='recurrent' cannot read task 'spirals'" in err
    assert not (tmp_path / "r").exists()


def test_lab_sweep_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`lab sweep` runs the grid; running it again skips every finished run."""
    cfg = tmp_path / "s.toml"
    cfg.write_text(TINY + "\n[sweep]\nseed = [0, 1]\n")
    out = tmp_path / "sweep"
    assert main(["lab", "sweep", str(cfg), "--out", str(out)]) == 0
    assert (out / "results.csv").is_file() and (out / "results.parquet").is_file()
    capsys.readouterr()
    assert main(["lab", "sweep", str(cfg), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("skipped") == 2


def test_lab_study_list(capsys: pytest.CaptureFixture[str]) -> None:
    """`lab study --list` names all ten studies with citations."""
    assert main(["lab", "study", "--list"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 10 and "hochreiter1997" in out and "Schmidhuber" in out


def test_lab_study_runs_and_writes_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lab study NAME --size test --markdown F` prints the verdict and writes the table."""
    md = tmp_path / "s.md"
    code = main(["lab", "study", "klambauer2017", "--size", "test", "--markdown", str(md)])
    assert code == 0
    assert "HELD" in capsys.readouterr().out
    assert "`klambauer2017`" in md.read_text()


def test_lab_configs_lists_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """`lab configs` lists the shipped example TOML files."""
    assert main(["lab", "configs"]) == 0
    assert "deep_sigmoid.toml" in capsys.readouterr().out
