"""The flushed chunks of a run, kept on the host so a Trace of "every step so far" is cheap.

Each flush hands the live layer the tables it just wrote (``recording.Flush``). Re-reading
every chunk at every flush would cost time growing with the run; instead the per-layer
metrics are kept as growing ``(steps, layers)`` float64 matrices, filled in place from each
new ``layers`` chunk, and a Trace is built over views of them. The values are those of the
chunks (float32, widened to float64), placed as ``gw.load`` places them (a missing value
never overwrites a measured one; among measured ones the later chunk wins), so the rules
see what they would see reading the run directory. Scalars and recurrent profiles are
small and go through the trace schema's own assembly (``trace_from_tables``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..trace import LayerInfo, Trace, trace_from_tables


class HostTables:
    """Every chunk flushed so far, as matrices a Trace can view without copying."""

    def __init__(self) -> None:
        self._steps = np.zeros(0, dtype=np.int64)  # capacity-sized; the first _n are used
        self._n = 0
        self._n_layers = 0
        self._mats: dict[str, np.ndarray] = {}  # metric -> (capacity, layers)
        self._scalars: list[pa.Table] = []
        self._recurrent: list[pa.Table] = []

    @property
    def steps(self) -> np.ndarray:
        """Steps with a ``layers`` row so far (sorted)."""
        return self._steps[: self._n]

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
            for name, mat in self._mats.items():
                wide = np.full((mat.shape[0], n_layers), np.nan)
                keep = min(n_layers, mat.shape[1])
                wide[:, :keep] = mat[:, :keep]
                self._mats[name] = wide
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
        new_steps, inverse = np.unique(step, return_inverse=True)
        rows = self._rows_for(new_steps)[inverse.reshape(-1)]
        valid = (layer >= 0) & (layer < self._n_layers)
        for name in table.column_names:
            if name in ("step", "layer"):
                continue
            values = table.column(name).to_numpy(zero_copy_only=False)
            values = np.asarray(values, dtype=np.float64)
            mat = self._mats.get(name)
            if mat is None:
                mat = np.full((len(self._steps), self._n_layers), np.nan)
                self._mats[name] = mat
            keep = valid & ~np.isnan(values)
            mat[rows[keep], layer[keep]] = values[keep]

    def _rows_for(self, new_steps: np.ndarray) -> np.ndarray:
        """Row of each of ``new_steps`` (sorted), adding rows for the steps not seen yet."""
        old = self._steps[: self._n]
        merged = np.union1d(old, new_steps)
        if len(merged) > self._n:
            if self._n and merged[self._n - 1] != old[-1]:
                # A step older than the newest one arrived: re-sort (not done by the
                # recorder, whose windows only move forward; kept correct anyway).
                where = np.searchsorted(merged, old)
                for name, mat in self._mats.items():
                    fresh = np.full((max(len(merged), mat.shape[0]), self._n_layers), np.nan)
                    fresh[where] = mat[: self._n]
                    self._mats[name] = fresh
            self._reserve(len(merged))
            self._steps[: len(merged)] = merged
            self._n = len(merged)
        return np.searchsorted(self._steps[: self._n], new_steps)

    def _reserve(self, rows: int) -> None:
        """Grow the matrices (doubling) to hold ``rows`` steps."""
        cap = len(self._steps)
        if rows <= cap:
            return
        cap = max(rows, 2 * cap, 64)
        steps = np.zeros(cap, dtype=np.int64)
        steps[: self._n] = self._steps[: self._n]
        self._steps = steps
        for name, mat in self._mats.items():
            grown = np.full((cap, self._n_layers), np.nan)
            grown[: min(len(mat), cap)] = mat[:cap]
            self._mats[name] = grown

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
        n = self._n
        return Trace(
            layers=layers,
            steps=self._steps[:n],
            metrics={name: mat[:n] for name, mat in self._mats.items()},
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
