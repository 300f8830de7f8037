"""`gradwatch report` and `gradwatch export tensorboard`, through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gradwatch.diagnosis
from gradwatch.cli import main as cli_main
from gradwatch.diagnosis import Finding
from gradwatch.trace import Trace


def _lean_trace(decay: float, seed: int) -> Trace:
    """Three layers, six steps, gradient RMS and loss only: a quick report to draw."""
    rng = np.random.default_rng(seed)
    rms = 10.0 ** (-decay * np.arange(3)[::-1])[None, :] * np.exp(rng.normal(0, 0.05, (6, 3)))
    return Trace.from_arrays(
        ["l0", "l1", "l2"],
        np.arange(6),
        {"grad_rms": rms},
        scalars={"loss": np.linspace(2, 1, 6)},
        meta={"config": {"every": 1}},
    )


def _run_dir(tmp_path: Path, name: str, decay: float, seed: int) -> Path:
    """Store a lean trace as a run directory in the recorder's chunk format."""
    import pyarrow as pa

    from gradwatch.trace import RunWriter

    t = _lean_trace(decay, seed)
    w = RunWriter(tmp_path / name)
    w.write_meta({k: v for k, v in t.meta.items() if k != "format_version"})
    n_steps, n_layers = t.matrix("grad_rms").shape
    w.write_chunk(
        "layers",
        pa.table(
            {
                "step": pa.array(np.repeat(t.steps, n_layers), pa.int64()),
                "layer": pa.array(np.tile(np.arange(n_layers), n_steps), pa.int64()),
                "grad_rms": pa.array(t.matrix("grad_rms").reshape(-1), pa.float32()),
            }
        ),
    )
    w.write_chunk("scalars", pa.table({"step": t.scalar_steps, "loss": t.scalar("loss")}))
    return w.path


@pytest.fixture
def fake_diagnose(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deterministic diagnose: one warning for runs whose first layer gets < 1 % gradient."""

    def diagnose(trace: Trace) -> list[Finding]:
        last = trace.matrix("grad_rms")[-1]
        if last[0] / last[-1] < 1e-2:
            return [Finding("vanishing_gradient", "warning", ("l0",), None, {}, "Fading.")]
        return []

    monkeypatch.setattr(gradwatch.diagnosis, "diagnose", diagnose, raising=False)


def test_report_two_runs_json(
    tmp_path: Path, fake_diagnose: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two run dirs -> one HTML file; --format json lists each run with its findings."""
    a, b = _run_dir(tmp_path, "sigmoid", 1.5, 0), _run_dir(tmp_path, "relu", 0.1, 1)
    out = tmp_path / "r.html"
    rc = cli_main.main(["report", str(a), str(b), "--out", str(out), "--format", "json"])
    assert rc == 0
    body = json.loads(capsys.readouterr().out)
    assert body["out"] == str(out)
    assert [r["label"] for r in body["runs"]] == ["sigmoid", "relu"]
    assert [r["findings"] for r in body["runs"]] == [{"warning": 1}, {}]
    html = out.read_text(encoding="utf-8")
    assert 'id="comparison"' in html and "Warning — Fading." in html


def test_report_text_prints_a_table_and_the_path(
    tmp_path: Path, fake_diagnose: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Text output: the run comparison table and where the report was written."""
    a = _run_dir(tmp_path, "only", 0.1, 2)
    rc = cli_main.main(["report", str(a), "-o", str(tmp_path / "x.html"), "--label", "mine"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "mine" in out and f"wrote {tmp_path / 'x.html'}" in out


def test_report_chi1_overlays_the_theory_profile(
    tmp_path: Path, fake_diagnose: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """--chi1 adds the theory-vs-measurement plot to every run, one run or several."""
    a, b = _run_dir(tmp_path, "a", 0.5, 0), _run_dir(tmp_path, "b", 0.5, 1)
    for runs in ([a], [a, b]):
        out = tmp_path / f"r{len(runs)}.html"
        rc = cli_main.main(["report", *map(str, runs), "-o", str(out), "--chi1", "0.1"])
        assert rc == 0
        assert out.read_text(encoding="utf-8").count('data-plot="theory"') == len(runs)
    rc = cli_main.main(["report", str(a), "-o", str(tmp_path / "x.html"), "--chi1", "-1"])
    assert rc == 2 and "`--chi1` to be a positive number" in capsys.readouterr().err


def test_report_missing_run_dir_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run dir that does not exist: exit 2 and a one-line message naming it."""
    rc = cli_main.main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("gradwatch report: error: run directory") and "nope" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def test_report_label_count_must_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One --label per RUN_DIR or none."""
    a = _run_dir(tmp_path, "a", 0.1, 0)
    rc = cli_main.main(
        ["report", str(a), "--label", "x", "--label", "y", "-o", str(tmp_path / "r.html")]
    )
    assert rc == 2
    assert "got 2 --label for 1 RUN_DIR" in capsys.readouterr().err


def test_export_tensorboard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`export tensorboard RUN_DIR LOGDIR` writes events TensorBoard reads back."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _run_dir(tmp_path, "run", 0.5, 3)
    logdir = tmp_path / "tb"
    rc = cli_main.main(["export", "tensorboard", str(run), str(logdir), "--no-histograms"])
    assert rc == 0 and "tensorboard --logdir" in capsys.readouterr().out
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    want = _lean_trace(0.5, 3).matrix("grad_rms")[:, 0]
    got = [e.value for e in acc.Scalars("grad_rms/L00 l0")]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert acc.Tags()["histograms"] == []


def test_export_needs_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    """`gradwatch export` without a target is a usage error."""
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["export"])
    assert exc.value.code == 2
    assert "tensorboard" in capsys.readouterr().err


def test_help_lists_report_and_export(capsys: pytest.CaptureFixture[str]) -> None:
    """Both sub-commands are registered in `gradwatch --help`."""
    with pytest.raises(SystemExit):
        cli_main.main(["--help"])
    out = capsys.readouterr().out
    assert "report" in out and "export" in out
