"""``gradwatch diagnose``: exit codes for --fail-on, JSON and human output, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from gradwatch.cli.main import main
from gradwatch.trace import LayerInfo, RunWriter


def _write_run(path: Path, grad_rms_decades: float, dead: float = 0.0) -> Path:
    """A run dir with 6 layers x 30 steps: grad_rms rising `decades` along depth."""
    n_layers, n_steps = 6, 30
    layers = [
        LayerInfo(f"fc{i}", "Linear", i, 12, {"weight": [3, 3], "bias": [3]}, activation="ReLU")
        for i in range(n_layers)
    ]
    writer = RunWriter(path)
    writer.write_meta({"layers": [la.to_json() for la in layers], "config": {"every": 1}})
    prof = 1e-3 * 10.0 ** (grad_rms_decades * np.arange(n_layers) / (n_layers - 1))
    steps = np.repeat(np.arange(n_steps), n_layers)
    writer.write_chunk(
        "layers",
        pa.table(
            {
                "step": steps,
                "layer": np.tile(np.arange(n_layers), n_steps),
                "grad_rms": np.tile(prof, n_steps).astype(np.float32),
                "act_dead": np.full(n_steps * n_layers, dead, dtype=np.float32),
            }
        ),
    )
    return path


@pytest.mark.parametrize(
    ("decades", "dead", "fail_on", "code"),
    [
        (5.0, 0.0, "critical", 1),  # vanishing, critical
        (5.0, 0.0, "warning", 1),
        (3.0, 0.0, "critical", 0),  # vanishing, warning only
        (3.0, 0.0, "warning", 1),
        (0.0, 0.0, "warning", 0),  # healthy
        (0.0, 0.6, "warning", 1),  # dead units, warning
    ],
)
def test_fail_on_sets_the_exit_code(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    decades: float,
    dead: float,
    fail_on: str,
    code: int,
) -> None:
    """Exit 1 exactly when a finding at or above --fail-on is present, else 0."""
    run_dir = _write_run(tmp_path / "run", decades, dead)
    assert main(["diagnose", str(run_dir), "--fail-on", fail_on]) == code
    assert main(["diagnose", str(run_dir)]) == 0  # without --fail-on it never fails
    capsys.readouterr()


def test_json_output_lists_the_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format json prints valid JSON with each finding's rule, severity and evidence."""
    run_dir = _write_run(tmp_path / "run", 5.0)
    assert main(["diagnose", str(run_dir), "--format", "json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert (body["layers"], body["steps"]) == (6, 30)
    rules = [(f["rule"], f["severity"]) for f in body["findings"]]
    assert rules == [("vanishing_gradient", "critical")]
    assert body["findings"][0]["evidence"]["max_contrast_decades"] == pytest.approx(5.0, abs=1e-3)


def test_human_output_names_rule_message_and_remedies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The human report shows the severity, the rule, its sentence and the first remedies."""
    run_dir = _write_run(tmp_path / "run", 3.0)
    main(["diagnose", str(run_dir)])
    out = capsys.readouterr().out
    assert "WARNING" in out and "vanishing_gradient" in out
    assert "Vanishing gradient:" in out
    assert "Try:" in out and "residual" in out


def test_healthy_run_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run with no finding prints that the gradients look healthy."""
    main(["diagnose", str(_write_run(tmp_path / "run", 0.0))])
    assert "No findings" in capsys.readouterr().out


def test_threshold_override_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--threshold rule.name=value changes what fires."""
    run_dir = _write_run(tmp_path / "run", 3.0)
    args = ["diagnose", str(run_dir), "--fail-on", "warning"]
    assert main([*args, "--threshold", "vanishing_gradient.warn_decades=3.5"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--threshold", "vanishing_gradient.warn=3"], "unknown threshold vanishing_gradient.warn"),
        (["--threshold", "nonsense"], "RULE.NAME=VALUE"),
        (["--threshold", "dead_units.warn_fraction=abc"], "not a number"),
    ],
)
def test_bad_threshold_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    """A bad --threshold exits 2 with a one-line message naming the problem."""
    run_dir = _write_run(tmp_path / "run", 3.0)
    assert main(["diagnose", str(run_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_run_dir_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run dir that does not exist exits 2 and says so."""
    assert main(["diagnose", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_plain_text_without_rich(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without rich installed the same report is printed as plain text."""
    import builtins

    real_import = builtins.__import__

    def no_rich(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("rich"):
            raise ImportError("no rich")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_rich)
    main(["diagnose", str(_write_run(tmp_path / "run", 3.0))])
    out = capsys.readouterr().out
    assert "WARNING vanishing_gradient" in out and "1. " in out
