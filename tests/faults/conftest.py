"""Shared pieces of the fault suite: a small recorded run, copied for each test to damage."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from ._helpers import train


@pytest.fixture(scope="session")
def _recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("recorded") / "run"
    # Sampled steps 0, 10, 20 only: the fixed spacing, whatever the machine's speed.
    train(run, flush_every=10, dense_steps=0, overhead=None)
    return run


@pytest.fixture
def fresh_run(_recorded: Path, tmp_path: Path) -> Callable[[], Path]:
    """A new copy of a recorded 30-step run (3 chunks of each kind, sampled every 10th step)
    for each call."""
    count = [0]

    def copy() -> Path:
        count[0] += 1
        return Path(shutil.copytree(_recorded, tmp_path / f"run{count[0]}"))

    return copy
