"""Lab sweeps: grid expansion, result tables, resume after an interruption."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from gradwatch.lab.config import ConfigError
from gradwatch.lab.runner import RESULT_FILE, RunResult
from gradwatch.lab.sweep import expand, run_name, sweep

BASE: dict[str, Any] = {
    "model": {"kind": "mlp", "depth": 2, "width": 4},
    "task": {"name": "spirals", "n_train": 64, "n_test": 32},
    "steps": 4,
    "batch_size": 16,
}


def test_expand_is_the_cartesian_product() -> None:
    """A grid of 2 x 3 values expands to 6 validated configs with distinct names."""
    runs = expand(BASE, {"model.depth": [2, 3], "remedies": [[], ["relu"], ["batchnorm"]]})
    assert len(runs) == 6 and len({r.name for r in runs}) == 6
    depths = sorted(r.config.model.depth for r in runs)  # type: ignore[union-attr]
    assert depths == [2, 2, 2, 3, 3, 3]
    assert run_name({"remedies": []}) == "remedies=none"


def test_invalid_point_fails_before_training(tmp_path: Path) -> None:
    """One invalid grid point stops the sweep before any run, naming the point and field."""
    with pytest.raises(ConfigError, match=r"sweep point remedies=lstm: remedies: 'lstm'"):
        sweep((BASE, {"remedies": [[], ["lstm"]]}), tmp_path)
    assert not any(p.is_dir() for p in tmp_path.iterdir())


def test_sweep_writes_runs_and_tables(tmp_path: Path) -> None:
    """Every point gets a run dir; Parquet and CSV tables hold one row per point."""
    frame = sweep((BASE, {"seed": [0, 1]}), tmp_path)
    assert list(frame["run"]) == ["seed=0", "seed=1"]
    assert (tmp_path / "seed=0" / "meta.json").is_file()
    for table in (
        pd.read_parquet(tmp_path / "results.parquet"),
        pd.read_csv(tmp_path / "results.csv"),
    ):
        assert list(table["seed"]) == [0, 1]
        assert table["test_metric"].between(0, 1).all()


def test_resume_skips_finished_and_redoes_partial(tmp_path: Path) -> None:
    """After an interruption, a point with result.json is skipped (its result kept as is) and
    a half-written run dir is run again."""
    points = expand(BASE, {"seed": [0, 1]})
    finished = tmp_path / points[0].name
    finished.mkdir(parents=True)
    sentinel = RunResult(
        name="seed=0", run_dir=str(finished), task="spirals", metric="accuracy",
        test_metric=0.123, baseline=0.5, final_loss=1.0, grad_ratio=1.0, diverged=False,
        steps=4, seconds=0.0,
    )  # fmt: skip
    (finished / RESULT_FILE).write_text(json.dumps(sentinel.to_json()))
    partial = tmp_path / points[1].name
    partial.mkdir()
    (partial / "meta.json").write_text('{"format_version": 1}')  # killed before result.json
    seen: list[tuple[str, bool]] = []
    frame = sweep(
        (BASE, {"seed": [0, 1]}), tmp_path, on_done=lambda p, r, s: seen.append((p.name, s))
    )
    assert seen == [("seed=0", True), ("seed=1", False)]
    assert frame.loc[frame["run"] == "seed=0", "test_metric"].item() == 0.123
    assert not (finished / "meta.json").exists()  # never re-run
    assert (partial / RESULT_FILE).is_file()


@pytest.mark.slow
def test_sweep_in_worker_processes_matches_in_process(tmp_path: Path) -> None:
    """Two spawned workers give the same results as one in-process run (determinism)."""
    grid = {"seed": [0, 1]}
    a = sweep((BASE, grid), tmp_path / "a", workers=2)
    b = sweep((BASE, grid), tmp_path / "b", workers=1)
    assert list(a["test_metric"]) == list(b["test_metric"])
    assert list(a["final_loss"]) == list(b["final_loss"])
