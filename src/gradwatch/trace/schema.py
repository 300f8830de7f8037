"""The trace format: column names, chunk kinds, metadata layout, and tables to and from a Trace.

This module is the one place the on-disk format is defined. The recorder hands it plain numpy
rows and dicts and gets Arrow tables back; the store writes those tables and reads them back
through :func:`trace_from_tables`. Chunks of each kind hold::

    layers      step (int64), layer (int32 depth), <LAYER_METRICS> (float32)
    scalars     step (int64), <STEP_SCALARS and the user's scalars> (float64)
    recurrent   step (int64), layer (int32 depth), t (int32), input_grad_norm (float32),
                profile (string: "whole" | "last_position"; absent in older traces = "whole")

``meta.json`` holds ``format_version`` first, then (as the recorder writes it) ``status``,
``created``, ``model``, ``layers`` (the layer table), ``config``, ``steps_recorded``,
``versions`` and the user's own keys.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._version import __version__
from .errors import TraceError
from .layers import LayerInfo
from .trace import PROFILE_KINDS, ProfileKind, RecurrentProfile, Trace, _readonly

#: Version of the run-directory format; a reader refuses a newer one.
FORMAT_VERSION = 1

#: Per-step-per-layer metrics the recorder writes (DESIGN.md, "Metric names").
LAYER_METRICS: tuple[str, ...] = (
    "grad_norm",
    "grad_rms",
    "grad_max",
    "weight_norm",
    "nonfinite",
    "update_ratio",
    "act_mean",
    "act_std",
    "act_saturated",
    "act_dead",
    "out_grad_norm",
)

#: Per-step scalars the recorder writes itself; users add their own through ``Watch.log``.
STEP_SCALARS: tuple[str, ...] = ("global_grad_norm", "skipped")

#: The kinds of chunk a run directory holds.
CHUNK_KINDS: tuple[str, ...] = ("layers", "scalars", "recurrent")

# Index columns each chunk kind must hold, with no nulls, for its rows to be placed.
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "layers": ("step", "layer"),
    "scalars": ("step",),
    "recurrent": ("step", "layer", "t", "input_grad_norm"),
}


# ---------------------------------------------------------------------- metadata
def stamp_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` with ``format_version`` first; a version already in ``meta`` is kept."""
    return {"format_version": FORMAT_VERSION, **meta}


def run_meta(
    *,
    status: str,
    created: float,
    model: Mapping[str, Any],
    layers: Sequence[LayerInfo],
    config: Mapping[str, Any],
    steps_recorded: int,
    frameworks: Mapping[str, str],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``meta.json`` of a recorded run.

    Args:
        status: ``"running"``, ``"complete"`` or ``"failed"``.
        created: When recording started (seconds since the epoch).
        model: Model summary (class, parameter counts).
        layers: The layer table; written in depth order.
        config: The recorder's settings.
        steps_recorded: Optimizer steps recorded so far.
        frameworks: Versions of the libraries that trained the model, e.g. ``{"torch": ...}``.
        extra: The user's own keys; they come last and win over the keys above.
    """
    ordered = sorted(layers, key=lambda info: info.depth)
    return stamp_meta(
        {
            "status": status,
            "created": created,
            "model": dict(model),
            "layers": [info.to_json() for info in ordered],
            "config": dict(config),
            "steps_recorded": steps_recorded,
            "versions": {
                "gradwatch": __version__,
                **frameworks,
                "numpy": np.__version__,
                "pyarrow": pa.__version__,
                "python": platform.python_version(),
            },
            **extra,
        }
    )


# ---------------------------------------------------------------------- rows -> tables
def layer_table(steps: np.ndarray, depth: np.ndarray, values: np.ndarray) -> pa.Table:
    """A ``layers`` chunk from a ``(steps, len(LAYER_METRICS), layers)`` block of values.

    Args:
        steps: The step of each row of ``values``.
        depth: The depth of each layer column of ``values``.
        values: Metric values in ``LAYER_METRICS`` order; NaN where not measured.
    """
    n_layers = len(depth)
    cols: dict[str, Any] = {
        "step": np.repeat(steps, n_layers).astype(np.int64),
        "layer": np.tile(np.asarray(depth, dtype=np.int32), len(steps)),
    }
    for m, name in enumerate(LAYER_METRICS):
        cols[name] = values[:, m, :].reshape(-1).astype(np.float32)
    return pa.table(cols)


def scalar_table(steps: np.ndarray, columns: Mapping[str, np.ndarray]) -> pa.Table:
    """A ``scalars`` chunk: one value per step of each named scalar (NaN = not logged)."""
    cols: dict[str, Any] = {"step": np.asarray(steps, dtype=np.int64)}
    for name, values in columns.items():
        cols[name] = np.asarray(values, dtype=np.float64)
    return pa.table(cols)


def recurrent_table(
    profiles: Iterable[tuple[int, int, np.ndarray]], profile: ProfileKind = "whole"
) -> pa.Table:
    """A ``recurrent`` chunk from ``(step, layer depth, ||dL/dx_t|| per time step)`` triples.

    Args:
        profiles: The triples, all of one kind.
        profile: Their kind (:data:`~gradwatch.trace.trace.PROFILE_KINDS`): ``"whole"`` for
            the whole loss's gradient, ``"last_position"`` for the last time step's loss only.

    Raises:
        ValueError: For an unknown ``profile``.
    """
    if profile not in PROFILE_KINDS:
        raise ValueError(
            f"Expected argument `profile` to be one of {list(PROFILE_KINDS)} but got {profile!r}."
        )
    steps, layer, t, vals = [], [], [], []
    for step, depth, values in profiles:
        k = len(values)
        steps.append(np.full(k, step, dtype=np.int64))
        layer.append(np.full(k, depth, dtype=np.int32))
        t.append(np.arange(k, dtype=np.int32))
        vals.append(values)
    return pa.table(
        {
            "step": np.concatenate(steps),
            "layer": np.concatenate(layer),
            "t": np.concatenate(t),
            "input_grad_norm": np.concatenate(vals).astype(np.float32),
            # One short string per row; Parquet dictionary-encodes it, so it costs ~nothing.
            "profile": pa.array([profile] * sum(len(v) for v in vals), type=pa.string()),
        }
    )


# ---------------------------------------------------------------------- tables -> Trace
def check_chunk(kind: str, table: pa.Table, file: Path) -> None:
    """Refuse a chunk whose index columns are missing or null (its rows cannot be placed).

    Raises:
        TraceError: Naming the file and the column.
    """
    for col in KEY_COLUMNS[kind]:
        if col not in table.column_names:
            raise TraceError(
                f"chunk {str(file)!r} has no {col!r} column ({kind} chunks need "
                f"{list(KEY_COLUMNS[kind])}); it was not written by gradwatch's recorder."
            )
        if table.column(col).null_count:
            raise TraceError(f"chunk {str(file)!r} has missing values in its {col!r} column.")


def trace_from_tables(
    meta: Mapping[str, Any],
    layer_tables: Sequence[pa.Table],
    scalar_tables: Sequence[pa.Table],
    recurrent_tables: Sequence[pa.Table],
    run_dir: Path | None = None,
) -> Trace:
    """Assemble a Trace from the chunk tables the recorder writes (vectorised, no step loop)."""
    layers = [LayerInfo.from_json(d) for d in meta.get("layers", [])]
    n_layers = len(layers)

    # Per-layer metrics: rows (step, layer, metric...) -> (steps, layers) matrices.
    metrics: dict[str, np.ndarray] = {}
    if layer_tables:
        table = pa.concat_tables(layer_tables, promote_options="default")
        step_col = table.column("step").to_numpy().astype(np.int64)
        layer_col = table.column("layer").to_numpy().astype(np.int64)
        steps, row = np.unique(step_col, return_inverse=True)
        valid = (layer_col >= 0) & (layer_col < n_layers)
        for name in table.column_names:
            if name in ("step", "layer"):
                continue
            values = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
            mat = np.full((len(steps), n_layers), np.nan)
            # Missing values never overwrite measured ones (a step can span two chunks).
            keep = valid & ~np.isnan(values)
            mat[row[keep], layer_col[keep]] = values[keep]
            metrics[name] = mat
    else:
        steps = np.zeros(0, dtype=np.int64)

    scalars: dict[str, np.ndarray] = {}
    if scalar_tables:
        table = pa.concat_tables(scalar_tables, promote_options="default")
        s_col = table.column("step").to_numpy().astype(np.int64)
        scalar_steps, s_row = np.unique(s_col, return_inverse=True)
        for name in table.column_names:
            if name == "step":
                continue
            values = table.column(name).to_numpy(zero_copy_only=False)
            values = np.asarray(values, dtype=np.float64)
            vec = np.full(len(scalar_steps), np.nan)
            # A later chunk wins for a repeated step (a value logged late); missing never wins.
            keep = ~np.isnan(values)
            vec[s_row[keep]] = values[keep]
            scalars[name] = vec
    else:
        scalar_steps = np.zeros(0, dtype=np.int64)

    profiles: dict[str, dict[str, RecurrentProfile]] = {k: {} for k in PROFILE_KINDS}
    if recurrent_tables:
        table = pa.concat_tables(recurrent_tables, promote_options="default")
        r_step = table.column("step").to_numpy().astype(np.int64)
        r_layer = table.column("layer").to_numpy().astype(np.int64)
        r_t = table.column("t").to_numpy().astype(np.int64)
        r_val = table.column("input_grad_norm").to_numpy(zero_copy_only=False).astype(np.float64)
        r_kind = _profile_kinds(table)
        for code, kind in enumerate(PROFILE_KINDS):
            of_kind = r_kind == code
            for li in np.unique(r_layer[of_kind]):
                sel = of_kind & (r_layer == li)
                p_steps, p_row = np.unique(r_step[sel], return_inverse=True)
                width = int(r_t[sel].max()) + 1
                vals = np.full((len(p_steps), width), np.nan)
                vals[p_row, r_t[sel]] = r_val[sel]
                name = layers[li].name if 0 <= li < n_layers else str(li)
                profiles[kind][name] = RecurrentProfile(
                    _readonly(p_steps),
                    _readonly(vals),
                    kind,  # type: ignore[arg-type]
                )

    return Trace(
        layers=layers,
        steps=steps,
        metrics=metrics,
        scalar_steps=scalar_steps,
        scalars=scalars,
        recurrent=profiles["whole"],
        last_position=profiles["last_position"],
        meta=meta,
        run_dir=run_dir,
    )


def _profile_kinds(table: pa.Table) -> np.ndarray:
    """The profile kind of each row of a ``recurrent`` table, as an index into PROFILE_KINDS.

    Chunks written before the ``profile`` column existed (and their rows after concatenation
    with newer chunks, as nulls) hold the whole loss's profile. Vectorised: a trace can hold
    hundreds of thousands of profile rows.

    Raises:
        TraceError: For a kind this version does not know (a trace from a newer gradwatch).
    """
    codes = np.zeros(table.num_rows, dtype=np.int64)
    if "profile" not in table.column_names:
        return codes
    col = table.column("profile")
    unknown = set(pc.unique(col.drop_null()).to_pylist()) - set(PROFILE_KINDS)
    if unknown:
        raise TraceError(
            f"recurrent chunks hold profile kinds {sorted(unknown)} that this gradwatch does not "
            f"know (it reads {list(PROFILE_KINDS)}); upgrade gradwatch to read this trace."
        )
    for code, kind in enumerate(PROFILE_KINDS[1:], start=1):
        hit = pc.fill_null(pc.equal(col, kind), False).to_numpy(zero_copy_only=False)
        codes[hit] = code
    return codes
