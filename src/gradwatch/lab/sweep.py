"""Grids of lab runs: expand a ``[sweep]`` table, run in worker processes, tabulate, resume.

A run is finished when its ``result.json`` exists (written atomically, last): a re-run of an
interrupted sweep skips those and redoes the rest (a half-written run dir is overwritten).
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from gradwatch.report.console import ProgressHandle
from gradwatch.report.console import progress as progress_bar

from .config import ConfigError, RunConfig, load_sweep, with_override
from .runner import RunResult, load_result, run

RESULTS_STEM = "results"


@dataclass(frozen=True)
class SweepRun:
    """One point of the grid: its directory name, overrides and validated config."""

    name: str
    overrides: dict[str, Any]
    config: RunConfig


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(map(str, value)) or "none"
    return str(value)


def run_name(overrides: Mapping[str, Any]) -> str:
    """A stable, file-system-safe directory name for a grid point.

    Example:
        >>> run_name({"model.depth": 5, "remedies": ["relu", "init_he"], "seed": 0})
        'depth=5,remedies=relu+init_he,seed=0'
    """
    parts = [f"{key.rsplit('.', 1)[-1]}={_fmt(v)}" for key, v in overrides.items()]
    return re.sub(r"[^A-Za-z0-9_.=+,-]", "_", ",".join(parts))


def expand(base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]) -> list[SweepRun]:
    """Every grid point as a validated config; any invalid one fails before anything trains.

    Example:
        >>> runs = expand({"model": {"kind": "mlp"}, "task": "spirals"}, {"seed": [0, 1]})
        >>> [r.name for r in runs]
        ['seed=0', 'seed=1']
    """
    keys = list(grid)
    runs: list[SweepRun] = []
    for values in itertools.product(*(grid[k] for k in keys)):
        overrides = dict(zip(keys, values, strict=True))
        data: dict[str, Any] = dict(base)
        for key, value in overrides.items():
            data = with_override(data, key, value)
        name = run_name(overrides)
        try:
            config = RunConfig.from_dict({**data, "name": data.get("name") or name})
        except ConfigError as exc:
            raise ConfigError(f"sweep point {name}: {exc}") from None
        runs.append(SweepRun(name, overrides, config))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError("two sweep points map to the same run directory name; vary the values")
    return runs


def _run_in_worker(config_data: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Worker entry point (spawned process): one thread per worker, as the cores are shared."""
    import torch

    torch.set_num_threads(1)
    result = run(RunConfig.from_dict(config_data), run_dir, overwrite=True)
    return result.to_json()


def _row(point: SweepRun, result: RunResult) -> dict[str, Any]:
    row: dict[str, Any] = {"run": point.name}
    row.update({k: _fmt(v) if isinstance(v, list) else v for k, v in point.overrides.items()})
    data = result.to_json()
    data.pop("losses")
    data["findings"] = ",".join(f["rule"] for f in data["findings"])
    data["remedies"] = "+".join(data["remedies"])
    row.update({k: v for k, v in data.items() if k not in row})
    return row


def write_table(rows: list[dict[str, Any]], out_dir: Path) -> Any:
    """Write ``results.parquet`` and ``results.csv`` (each atomically); return the DataFrame."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    for suffix, write in (
        (".parquet", lambda p: frame.to_parquet(p, index=False)),
        (".csv", lambda p: frame.to_csv(p, index=False)),
    ):
        final = out_dir / f"{RESULTS_STEM}{suffix}"
        tmp = final.with_name(f".{final.name}.tmp")
        write(tmp)
        tmp.replace(final)
    return frame


def sweep(
    config: str | os.PathLike[str] | tuple[Mapping[str, Any], Mapping[str, Sequence[Any]]],
    out_dir: str | os.PathLike[str],
    *,
    workers: int = 1,
    on_done: Callable[[SweepRun, RunResult, bool], None] | None = None,
    progress: bool | None = None,
) -> Any:
    """Run every grid point into ``out_dir/<run name>/`` and return the results DataFrame.

    Args:
        config: A TOML path with a ``[sweep]`` table, or ``(base config data, grid)``.
        out_dir: Holds one gradwatch run dir per point, ``results.parquet``/``.csv`` and
            ``sweep.json`` (the base config and grid).
        workers: Worker processes (spawn context). 1 runs in this process.
        on_done: Called with (point, result, skipped) as each run finishes or is skipped.
        progress: Show a progress bar (runs done of all, time left). ``None``: only when
            stdout is a terminal, or inside a caller's progress display (as a second bar).

    Example:
        >>> grid = {"seed": [0, 1]}
        >>> base = {"model": {"kind": "mlp", "depth": 2}, "task": "spirals", "steps": 5}
        >>> sweep((base, grid), "/tmp/gw-sweep-doc").shape[0]  # doctest: +SKIP
        2
    """
    if workers < 1:
        raise ValueError(f"workers={workers} must be >= 1")
    base, grid = load_sweep(config) if isinstance(config, (str, os.PathLike)) else config
    points = expand(base, grid)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps({"base": base, "grid": grid}, indent=2))
    with progress_bar("sweep", len(points), enabled=progress, transient=True) as bar:
        rows = _run_points(points, out, workers, on_done, bar)
    return write_table([rows[p.name] for p in points if p.name in rows], out)


def _run_points(
    points: list[SweepRun],
    out: Path,
    workers: int,
    on_done: Callable[[SweepRun, RunResult, bool], None] | None,
    bar: ProgressHandle,
) -> dict[str, dict[str, Any]]:
    """Run the points not finished before (in ``workers`` processes); the table rows."""
    rows: dict[str, dict[str, Any]] = {}
    todo: list[SweepRun] = []
    for point in points:
        done = load_result(out / point.name)
        if done is not None:
            rows[point.name] = _row(point, done)
            bar.advance()
            if on_done is not None:
                on_done(point, done, True)
        else:
            todo.append(point)

    def finish(point: SweepRun, result: RunResult) -> None:
        rows[point.name] = _row(point, result)
        write_table([rows[p.name] for p in points if p.name in rows], out)
        bar.update(description=f"sweep: {point.name} done")
        bar.advance()
        if on_done is not None:
            on_done(point, result, False)

    if workers == 1:
        for point in todo:
            finish(point, run(point.config, out / point.name, overwrite=True))
    elif todo:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            pending: dict[Future[dict[str, Any]], SweepRun] = {
                pool.submit(_run_in_worker, p.config.to_dict(), str(out / p.name)): p for p in todo
            }
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        point = pending.pop(future)
                        finish(point, RunResult.from_json(future.result()))
            except BaseException:
                # Interrupted or a run failed: finished runs keep their result.json; drop the rest.
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    return rows
