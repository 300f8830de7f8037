"""A training process killed with SIGKILL at any moment: every flushed step loads."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import gradwatch as gw

_TRAIN = """
import sys, torch, gradwatch as gw
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(8, 4)
# overhead=None: every step recorded however far the run gets before the kill
with gw.watch(model, opt, sys.argv[1], flush_every=4, sample_every=3, overhead=None) as w:
    for step in range(100000):
        loss = model(x).pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step(); w.log(loss=loss)
        print(step, flush=True)
"""


def _kill_after(run: Path, steps: int, jitter_s: float) -> int:
    """Start training, SIGKILL it once it printed ``steps`` steps (+ a random delay)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _TRAIN, str(run)], stdout=subprocess.PIPE,
                            env=env, text=True)  # fmt: skip
    assert proc.stdout is not None
    last = -1
    for line in proc.stdout:
        last = int(line)
        if last >= steps:
            break
    if jitter_s:
        import time

        time.sleep(jitter_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return last


def _check(run: Path, printed: int) -> None:
    trace = gw.load(run)
    n = len(trace.steps)
    assert n % 4 == 0 and n >= printed // 4 * 4 - 4  # every whole flush before the kill
    assert list(trace.steps) == list(range(n)) == list(trace.scalar_steps)
    assert trace.meta["status"] == "running"
    for metric in ("grad_rms", "act_mean", "update_ratio"):
        assert trace.matrix(metric).shape == (n, 3)


def test_sigkill_mid_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    printed = _kill_after(run, 30, 0.0)
    _check(run, printed)


@pytest.mark.slow
def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    rng = random.Random(0)
    for i in range(8):
        run = tmp_path / f"run{i}"
        printed = _kill_after(run, rng.randrange(0, 60), rng.uniform(0, 0.05))
        _check(run, printed)
