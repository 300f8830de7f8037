"""``gradwatch watch RUN_DIR``: a live view of a run that another process is writing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import gradwatch as gw
from gradwatch.cli import main as cli_main

SRC = str(Path(__file__).resolve().parents[2] / "src")

# Trains a small MLP for 60 steps, slowly enough to be watched, with a NaN at step 35.
_WRITER = textwrap.dedent(
    """
    import math, sys, time, torch, gradwatch as gw
    from gradwatch.live import online
    online.MAX_SHARE = 0.0  # toy steps: check at every flush
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with gw.watch(model, opt, sys.argv[1], flush_every=10, on_finding="warn") as w:
        go = sys.argv[1] + ".go"  # the test creates it once the viewer is up
        import os
        while not os.path.exists(go):
            time.sleep(0.02)
        for step in range(int(sys.argv[2])):
            x = torch.randn(32, 4)
            loss = (model(x) - x[:, :1]).pow(2).mean()
            opt.zero_grad(); loss.backward()
            if step == 35:
                model[0].weight.grad[0, 0] = math.nan
            opt.step(); w.log(loss=loss)
            time.sleep(float(sys.argv[3]))
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _start_writer(
    run: Path, steps: int = 60, pause: float = 0.05, *, go: bool = False
) -> subprocess.Popen[str]:
    """Start the writer; it records nothing until ``<run>.go`` exists (now, with ``go``)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(run), str(steps), str(pause)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (run / "meta.json").exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the writer did not start"
        time.sleep(0.05)
    if go:
        _go(run)
    return proc


def _go(run: Path) -> None:
    Path(f"{run}.go").touch()


def _watch(run: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gradwatch", "watch", str(run), "--interval", "0.1", *extra],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_json_updates_follow_a_run_written_by_another_process(tmp_path: Path) -> None:
    """One JSON object per update: the steps grow, the NaN finding appears, it ends at complete."""
    run = tmp_path / "run"
    writer = _start_writer(run)
    viewer = _watch(run, "--format", "json", "--timeout", "120")
    assert viewer.stdout is not None
    first = viewer.stdout.readline()  # the viewer is up: the run has not started
    _go(run)
    rest, err = viewer.communicate(timeout=180)
    writer.wait(timeout=60)
    assert viewer.returncode == 0, err
    updates = [json.loads(line) for line in [first, *rest.splitlines()]]
    assert updates[0]["steps"] == 0 and updates[0]["status"] == "running"
    steps = [u["steps"] for u in updates]
    assert len(updates) >= 3 and steps == sorted(steps)
    assert updates[-1]["status"] == "complete" and steps[-1] == 60
    assert any(0 < s < 60 for s in steps), "saw the run while it was being written"
    assert "nonfinite_gradient" in {f["rule"] for f in updates[-1]["findings"]}
    # (Other findings may come first: the writer records at the default budget, so which
    # steps are sampled depends on the machine's speed.)
    first_nan = next(
        u for u in updates if "nonfinite_gradient" in {f["rule"] for f in u["findings"]}
    )
    assert first_nan["steps"] >= 40  # the NaN of step 35 lands with the flush of 30-39
    final = updates[-1]
    trace = gw.load(run)
    assert final["layers"] == len(trace.layers)
    assert final["loss_step"] == 59
    assert final["loss"] is None  # NaN since the NaN gradient of step 35 (JSON: null)
    assert np.isnan(trace.scalar("loss")[-1])
    assert [g["layers"] for g in final["gradient_flow"]] == ["L00 0", "L01 2"]


def test_plain_blocks_without_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off a terminal each update is a plain block; --once prints one and exits 0."""
    run = tmp_path / "run"
    _start_writer(run, steps=25, pause=0.0, go=True).wait(timeout=120)
    rc = cli_main.main(["watch", str(run), "--once"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("gradwatch watch") == 1 and "complete, 25 steps, 2 layers" in out
    assert "L00 0" in out and "L01 2" in out and "loss" in out
    assert "findings (0" in out or "none" in out


def test_ctrl_c_ends_quietly(tmp_path: Path) -> None:
    """SIGINT while following a running run: exit status 0 and no traceback."""
    run = tmp_path / "run"
    writer = _start_writer(run, steps=400, pause=0.05, go=True)
    viewer = _watch(run)
    try:
        assert viewer.stdout is not None
        first = viewer.stdout.readline()  # the first block: the viewer is following
        assert viewer.poll() is None, "still following the running run"
        viewer.send_signal(signal.SIGINT)
        out, err = viewer.communicate(timeout=30)
        out = first + out
    finally:
        writer.kill()
        writer.wait()
    assert viewer.returncode == 0
    assert "Traceback" not in err
    assert "gradwatch watch" in out


def test_missing_run_dir_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A RUN_DIR that does not exist: status 2 and one line saying what to pass."""
    rc = cli_main.main(["watch", str(tmp_path / "nope"), "--once"])
    assert rc == 2
    assert "is not a directory" in capsys.readouterr().err
