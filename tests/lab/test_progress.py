"""Long lab work reports progress through the one console helper: N/M done, time left.

The bar itself (rich, N/M, ETA, joining a display) is tested in tests/report/test_console.py;
here a recording stand-in for the display checks what each piece of work reports: the
total it announces and how far it gets.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from gradwatch.report.console import ProgressHandle


class _Display:
    """Stands in for rich's Progress: records every call a ProgressHandle makes."""

    def __init__(self) -> None:
        self.completed = 0.0
        self.seen: list[float] = []
        self.descriptions: list[str] = []
        self.console = None

    def advance(self, task: Any, n: float) -> None:
        self.completed += n
        self.seen.append(self.completed)

    def update(
        self, task: Any, *, completed: Any = None, description: Any = None, total: Any = None
    ) -> None:
        if completed is not None:
            self.completed = completed
            self.seen.append(completed)
        if description is not None:
            self.descriptions.append(description)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Replace the progress helper where the lab imported it; collect what was drawn."""
    log: dict[str, Any] = {"bars": []}

    @contextmanager
    def fake(description: str | None, total: float | None = None, **kwargs: Any) -> Any:
        display = _Display()
        log["bars"].append((description, total, kwargs, display))
        yield ProgressHandle(display, 0)

    import gradwatch.lab.sweep as sweep_mod
    import gradwatch.lab.verify as verify_mod
    from gradwatch.lab.studies import base

    monkeypatch.setattr(verify_mod, "progress_bar", fake)
    monkeypatch.setattr(sweep_mod, "progress_bar", fake)
    monkeypatch.setattr(base, "progress", fake)
    yield log


def test_verify_counts_both_runs_steps(recorded: dict[str, Any]) -> None:
    """gw.verify announces 2 x steps and reaches it: the baseline, then the remedied run."""
    from gradwatch.lab.verify import verify

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 1))
    data = [(torch.randn(16, 4), torch.randn(16, 1))]
    verify(mlp, "relu", data, steps=3, seed=0)
    [(description, total, kwargs, display)] = recorded["bars"]
    assert description == "verify relu" and total == 6 and kwargs["transient"] is True
    assert display.seen == [1, 2, 3, 4, 5, 6]
    assert display.descriptions == ["verify relu: baseline", "verify relu: with it"]


def test_sweep_counts_points_including_skipped(recorded: dict[str, Any], tmp_path: Path) -> None:
    """A sweep announces its grid size; a rerun counts the finished points it skips."""
    from gradwatch.lab.sweep import sweep

    base = {"model": {"kind": "mlp", "depth": 2}, "task": "spirals", "steps": 2}
    sweep((base, {"seed": [0, 1]}), tmp_path / "s")
    sweep((base, {"seed": [0, 1, 2]}), tmp_path / "s")  # two done before, one new
    (_, first_total, _, first), (_, second_total, _, second) = recorded["bars"]
    assert (first_total, first.completed) == (2, 2)
    assert (second_total, second.completed) == (3, 3)
    assert second.descriptions == ["sweep: seed=2 done"]


def test_study_seeds_count_every_step(recorded: dict[str, Any]) -> None:
    """A study's seeds announce seeds x steps and reach it, seed after seed."""
    from gradwatch.lab.config import RunConfig
    from gradwatch.lab.studies.base import run_seeds

    config = RunConfig.from_dict(
        {"name": "tiny", "model": {"kind": "mlp", "depth": 2}, "task": "spirals", "steps": 3}
    )
    results = run_seeds(config, [0, 1])
    assert len(results) == 2
    [(description, total, _, display)] = recorded["bars"]
    assert description == "tiny: 2 seeds" and total == 6
    assert display.seen == [1, 2, 3, 4, 5, 6]


def test_nobody_watching_nothing_printed(capsys: pytest.CaptureFixture[str]) -> None:
    """Under pytest stdout is not a terminal: verify prints nothing (progress off)."""
    from gradwatch.lab.verify import verify

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    verify(mlp, "relu", [(torch.randn(8, 4), torch.randn(8, 1))], steps=2)
    assert capsys.readouterr().out == ""
