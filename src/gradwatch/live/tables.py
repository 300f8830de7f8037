"""The flushed chunks of a run, kept on the host so a Trace of "every step so far" is cheap.

Each flush hands the live layer the tables it just wrote (``recording.Flush``). Re-reading
every chunk at every flush would cost time growing with the run; instead each per-layer
metric is kept as growing float64 rows (only the steps where it was measured, as the loader
keeps them), filled in place from each new ``layers`` chunk, and a Trace is built over views
of them. The values are those of the
chunks (float32, widened to float64), placed as ``gw.load`` places them (a missing value
never overwrites a measured one; among measured ones the later chunk wins), so the rules
see what they would see reading the run directory. Scalars and recurrent profiles are
small and go through the trace schema's own assembly (``trace_from_tables``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..trace import LayerInfo, Trace, trace_from_tables
from ..trace.trace import MeasuredRows


class _Rows:
    """Sorted steps, each with one row of per-layer values; capacity doubles as it grows.

    One per metric, holding only the steps where the metric was measured (a sampled metric
    keeps a tenth of the rows with ``sample_every=10``), as the loader's ``MeasuredRows`` do.
    """

    def __init__(self, n_layers: int, *, values: bool = True) -> None:
        self.n = 0
        self._steps = np.zeros(0, dtype=np.int64)
        self._vals = np.full((0, n_layers), np.nan) if values else None

    @property
    def steps(self) -> np.ndarray:
        return self._steps[: self.n]

    @property
    def values(self) -> np.ndarray:
        assert self._vals is not None
        return self._vals[: self.n]

    def widen(self, n_layers: int) -> None:
        if self._vals is not None and self._vals.shape[1] != n_layers:
            wide = np.full((len(self._vals), n_layers), np.nan)
            keep = min(n_layers, self._vals.shape[1])
            wide[:, :keep] = self._vals[:, :keep]
            self._vals = wide

    def place(self, new_steps: np.ndarray) -> np.ndarray:
        """Row of each of ``new_steps`` (sorted, unique), adding rows for steps not seen yet."""
        old = self.steps
        merged = np.union1d(old, new_steps)
        if len(merged) > self.n:
            self._reserve(len(merged))
            if self.n and merged[self.n - 1] != old[-1] and self._vals is not None:
                # A step older than the newest one arrived: move the rows to their sorted
                # places (the recorder's windows only move forward; kept correct anyway).
                moved = np.full_like(self._vals, np.nan)
                moved[np.searchsorted(merged, old)] = self._vals[: self.n]
                self._vals = moved
            self._steps[: len(merged)] = merged
            self.n = len(merged)
        return np.searchsorted(self.steps, new_steps)

    def _reserve(self, rows: int) -> None:
        cap = len(self._steps)
        if rows <= cap:
            return
        cap = max(rows, 2 * cap, 64)
        steps = np.zeros(cap, dtype=np.int64)
        steps[: self.n] = self._steps[: self.n]
        self._steps = steps
        if self._vals is not None:
            grown = np.full((cap, self._vals.shape[1]), np.nan)
            grown[: self.n] = self._vals[: self.n]
            self._vals = grown


class HostTables:
    """Every chunk flushed so far, as matrices a Trace can view without copying."""

    def __init__(self) -> None:
        self._n_layers = 0
        self._index = _Rows(0, values=False)  # every step with a layers row
        self._metrics: dict[str, _Rows] = {}  # metric -> the steps it was measured at
        self._scalars: list[pa.Table] = []
        self._recurrent: list[pa.Table] = []

    @property
    def steps(self) -> np.ndarray:
        """Steps with a ``layers`` row so far (sorted)."""
        return self._index.steps

    def add(self, tables: Iterable[tuple[str, pa.Table]], n_layers: int) -> None:
        """Take in one flush's ``(kind, table)`` pairs.

        Args:
            tables: The chunk tables of the flush, in the order written.
            n_layers: Layers in the run's layer table (rows naming another depth are
                ignored, as the loader ignores them).
        """
        if n_layers != self._n_layers:
            # The layer table is fixed once the first forward has ordered it; before that
            # nothing was flushed. Widen the matrices if it ever grows.
            for rows in self._metrics.values():
                rows.widen(n_layers)
            self._n_layers = n_layers
        for kind, table in tables:
            if kind == "layers":
                self._add_layers(table)
            elif kind == "scalars":
                self._scalars.append(table)
            elif kind == "recurrent":
                self._recurrent.append(table)

    def _add_layers(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        step = table.column("step").to_numpy().astype(np.int64)
        layer = table.column("layer").to_numpy().astype(np.int64)
        self._index.place(np.unique(step))
        valid = (layer >= 0) & (layer < self._n_layers)
        for name in table.column_names:
            if name in ("step", "layer"):
                continue
            values = table.column(name).to_numpy(zero_copy_only=False)
            values = np.asarray(values, dtype=np.float64)
            keep = valid & ~np.isnan(values)
            rows = self._metrics.get(name)
            if rows is None:
                rows = self._metrics[name] = _Rows(self._n_layers)
            if not keep.any():
                continue
            at, inverse = np.unique(step[keep], return_inverse=True)
            where = rows.place(at)[inverse.reshape(-1)]
            rows.values[where, layer[keep]] = values[keep]

    def _loader(self, rows: _Rows) -> Callable[[], MeasuredRows]:
        # Row indices into the trace's steps; views of the kept values (no copy).
        index = np.searchsorted(self._index.steps, rows.steps)
        values = rows.values
        return lambda: MeasuredRows(index, values)

    def trace(self, meta: Mapping[str, Any], run_dir: Path | None = None) -> Trace:
        """The Trace of every step flushed so far, under ``meta`` (the run's metadata).

        The trace views the matrices kept here: it is valid until the next :meth:`add`.
        """
        rest = trace_from_tables(meta, [], self._scalars, self._recurrent, run_dir)
        # Concatenated once here, so the next assembly reads one table, not one per flush.
        if len(self._scalars) > 1:
            self._scalars = [pa.concat_tables(self._scalars, promote_options="default")]
        if len(self._recurrent) > 1:
            self._recurrent = [pa.concat_tables(self._recurrent, promote_options="default")]
        layers: list[LayerInfo] = list(rest.layers)
        return Trace(
            layers=layers,
            steps=self._index.steps,
            metrics={name: self._loader(rows) for name, rows in self._metrics.items()},
            scalar_steps=rest.scalar_steps,
            scalars={name: rest.scalar(name) for name in rest.scalar_names},
            recurrent={
                name: rest.input_grad_profile(name, "whole")
                for name in rest.recurrent_layers
                if "whole" in rest.profile_kinds(name)
            },
            last_position={
                name: rest.input_grad_profile(name, "last_position")
                for name in rest.recurrent_layers
                if "last_position" in rest.profile_kinds(name)
            },
            meta=meta,
            run_dir=run_dir,
        )
