"""Nothing is silently substituted: an unrecorded --step is an error naming the recorded
ones; a shipped config is found by the name ``gradwatch lab configs`` lists."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import gradwatch as gw
from gradwatch.cli.main import main


@pytest.mark.parametrize(
    ("step", "nearest"), [(5, "0, 10, 20"), (99999, "0, 10, 20"), (14, "0, 10, 20")]
)
def test_explain_unrecorded_step_names_the_nearest(
    step: int, nearest: str, fresh_run: Callable[[], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """out_grad_norm is measured every 10th step of the 30-step run: 0, 10, 20."""
    run = fresh_run()
    assert list(gw.load(run).measured("out_grad_norm")[0]) == [0, 10, 20]
    assert main(["explain", str(run), "--step", str(step)]) == 2
    err = capsys.readouterr().err
    assert f"--step {step} was not recorded" in err and f"Nearest recorded: {nearest}" in err


def test_explain_recorded_step_walks_that_step(
    fresh_run: Callable[[], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run = fresh_run()
    assert main(["explain", str(run), "--step", "20"]) == 0
    assert "at step 20 " in capsys.readouterr().out
    # grad_rms is recorded every step, so step 5 exists for it.
    assert main(["explain", str(run), "--step", "5", "--metric", "grad_rms"]) == 0
    assert "at step 5 " in capsys.readouterr().out


@pytest.mark.parametrize("name", ["deep_sigmoid.toml", "deep_sigmoid"])
def test_lab_config_by_shipped_name(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradwatch.cli.lab import _resolve_config

    monkeypatch.chdir(tmp_path)  # no such file here
    resolved = Path(_resolve_config(name))
    assert resolved.name == "deep_sigmoid.toml" and resolved.is_file()
    assert resolved.parent.name == "configs"


def test_lab_config_local_file_wins_and_unknown_lists_shipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gradwatch.cli.lab import _resolve_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep_sigmoid.toml").write_text("# mine\n")
    assert _resolve_config("deep_sigmoid.toml") == "deep_sigmoid.toml"
    assert main(["lab", "run", "no_such_config.toml"]) == 2
    err = capsys.readouterr().err
    assert "no_such_config.toml" in err and "deep_sigmoid.toml" in err and err.count("\n") == 1
