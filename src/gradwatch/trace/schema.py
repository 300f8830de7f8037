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
``versions`` (the :data:`RESERVED_META` keys), then the user's own keys, which may not reuse a
reserved name. Every chunk of one flush carries a :data:`FLUSH_KEY` tag in its Parquet
metadata (the step the flush covers up to, and how many chunks of each kind it wrote), so a
reader of a run still being written keeps only whole flushes.
"""

from __future__ import annotations

import json
import platform
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._version import __version__
from ._index import LayerIndex
from .errors import TraceError
from .layers import LayerInfo
from .trace import (
    PROFILE_KINDS,
    MeasuredRows,
    ProfileKind,
    RecurrentProfile,
    Trace,
    _readonly,
)

#: Version of the run-directory format; a reader refuses a newer one.
FORMAT_VERSION = 1

#: The metrics the activation sampler writes together on sampled steps (contiguous in
#: LAYER_METRICS, in this order: ``recording.activations`` writes them as one block).
SAMPLED_METRICS: tuple[str, ...] = (
    "act_mean",
    "act_std",
    "act_saturated",
    "act_dead",
    "out_grad_norm",
    # Added after format 1 was fixed (as grad_underflow below): older run directories lack
    # the column and read it as missing (NaN), like any metric that was not measured.
    "act_between_inputs",
)

#: Per-step-per-layer metrics the recorder writes (DESIGN.md, "Metric names").
LAYER_METRICS: tuple[str, ...] = (
    "grad_norm",
    "grad_rms",
    "grad_max",
    "weight_norm",
    "nonfinite",
    "update_ratio",
    *SAMPLED_METRICS,
    # Added after format 1 was fixed: older run directories lack the column and read it as
    # missing (NaN), like any metric that was not measured.
    "grad_underflow",
)

#: Per-step scalars the recorder writes itself; users add their own through ``Watch.log``.
STEP_SCALARS: tuple[str, ...] = ("global_grad_norm", "skipped")

#: The learning rate the optimizer's step used (the largest over its parameter groups),
#: written on recorded steps when the watch has an optimizer.
OPTIMIZER_LR = "optimizer_lr"

#: The kinds of chunk a run directory holds.
CHUNK_KINDS: tuple[str, ...] = ("layers", "scalars", "recurrent")

# Index columns each chunk kind must hold, with no nulls, for its rows to be placed.
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "layers": ("step", "layer"),
    "scalars": ("step",),
    "recurrent": ("step", "layer", "t", "input_grad_norm"),
}


#: ``meta.json`` keys gradwatch writes itself, with the JSON type each must have; a user's
#: ``meta`` may not use them (``gw.watch`` refuses them before attaching anything).
RESERVED_META: dict[str, tuple[type, ...]] = {
    "format_version": (int,),
    "status": (str,),
    "reason": (str,),
    "created": (int, float),
    "model": (dict,),
    "layers": (list,),
    "config": (dict,),
    "steps_recorded": (int,),
    "versions": (dict,),
}

#: Parquet schema-metadata key of the flush tag every chunk carries.
FLUSH_KEY = b"gradwatch.flush"


# ---------------------------------------------------------------------- metadata
def check_user_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """The user's ``meta`` for ``gw.watch``, checked: a mapping of string keys, none reserved.

    Raises:
        TypeError: When ``meta`` is not a mapping or a key is not a string.
        ValueError: When a key is one gradwatch writes itself (it would overwrite it).
    """
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise TypeError(
            f"Expected argument `meta` to be a dict of JSON values but got "
            f"{type(meta).__name__}. Pass e.g. `meta={{'model_name': 'resnet50'}}`."
        )
    for key in meta:
        if not isinstance(key, str):
            raise TypeError(
                f"Expected the keys of argument `meta` to be strings but got {key!r}; "
                "meta.json is JSON, whose keys are strings."
            )
        if key in RESERVED_META:
            raise ValueError(
                f"Argument `meta` uses the key {key!r}, which gradwatch writes itself "
                f"(reserved: {sorted(RESERVED_META)}). Rename it, e.g. "
                f"`meta={{'user_{key}': ...}}`."
            )
    return dict(meta)


def normalize_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` with every reserved field of the type readers expect.

    Runs written before user keys were kept apart may hold a user's value under a reserved
    name (``meta={"model": "resnet50"}`` replaced the model summary). Such a value is moved
    under ``"user"`` (``meta["user"]["model"] == "resnet50"``) and the field is left out,
    so no reader meets a string where it expects a dict. ``format_version`` and ``layers``
    are checked by the store, which cannot read a run without them.
    """
    out = dict(meta)
    moved: dict[str, Any] = {}
    for key, types in RESERVED_META.items():
        if key in ("format_version", "layers") or key not in out:
            continue
        value = out[key]
        if not isinstance(value, types) or isinstance(value, bool):
            moved[key] = out.pop(key)
    if moved:
        user = out.get("user")
        merged = dict(user) if isinstance(user, dict) else ({} if user is None else {"user": user})
        out["user"] = {**merged, **moved}
    return out


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
    reason: str | None = None,
) -> dict[str, Any]:
    """The ``meta.json`` of a recorded run.

    Args:
        status: ``"running"``, ``"complete"``, ``"failed"`` (training raised) or
            ``"stopped"`` (recording stopped early, e.g. the disk filled up; see ``reason``).
        created: When recording started (seconds since the epoch).
        model: Model summary (class, parameter counts).
        layers: The layer table; written in depth order.
        config: The recorder's settings.
        steps_recorded: Optimizer steps recorded so far.
        frameworks: Versions of the libraries that trained the model, e.g. ``{"torch": ...}``.
        extra: The user's own keys; they come last.
        reason: Why recording stopped early, in words; written only when given.

    Raises:
        ValueError: When ``extra`` uses a reserved key (see :func:`check_user_meta`).
    """
    extra = check_user_meta(extra)
    ordered = sorted(layers, key=lambda info: info.depth)
    return stamp_meta(
        {
            "status": status,
            **({"reason": reason} if reason is not None else {}),
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


def tag_flush(tables: Sequence[tuple[str, pa.Table]], until: int) -> list[tuple[str, pa.Table]]:
    """The chunk tables of one flush, each tagged with what the whole flush wrote.

    Args:
        tables: ``(kind, table)`` pairs of one flush, in the order they are written.
        until: First step after the flush's window.
    """
    parts = Counter(kind for kind, _ in tables)
    tag = json.dumps({"format": FORMAT_VERSION, "until": until, "parts": dict(parts)}).encode()
    return [
        (kind, table.replace_schema_metadata({**(table.schema.metadata or {}), FLUSH_KEY: tag}))
        for kind, table in tables
    ]


def flush_tag(
    metadata: Mapping[bytes, bytes] | None, file: Path
) -> tuple[int, dict[str, int]] | None:
    """``(until, chunks per kind)`` of the flush a chunk belongs to; None for untagged chunks.

    Raises:
        TraceError: When the tag is malformed or from a newer format.
    """
    raw = (metadata or {}).get(FLUSH_KEY)
    if raw is None:
        return None
    try:
        tag = json.loads(raw)
        version, until = int(tag["format"]), int(tag["until"])
        parts = {str(k): int(v) for k, v in dict(tag["parts"]).items()}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TraceError(
            f"chunk {str(file)!r} has a malformed gradwatch flush tag ({exc}); it was not "
            "written by gradwatch's recorder. Remove it from the run directory."
        ) from exc
    if version > FORMAT_VERSION:
        raise TraceError(
            f"chunk {str(file)!r} was written in trace format {version}, newer than this "
            f"gradwatch reads (format {FORMAT_VERSION}). Upgrade gradwatch: "
            "`pip install -U gradwatch`."
        )
    return until, parts


# ---------------------------------------------------------------------- tables -> Trace
def _layer_columns_in_memory(
    tables: Sequence[pa.Table], n_layers: int
) -> tuple[LayerIndex, dict[str, Callable[[], MeasuredRows]]]:
    """The row index of in-memory ``layers`` chunks and a loader for each metric column."""
    tables = list(tables)  # a snapshot: the recorder's list goes on growing
    index = LayerIndex.from_chunks(
        [t.column("step").to_numpy() for t in tables],
        [t.column("layer").to_numpy() for t in tables],
        n_layers,
    )
    names = dict.fromkeys(n for t in tables for n in t.column_names if n not in ("step", "layer"))

    def loader(name: str) -> Callable[[], MeasuredRows]:
        return lambda: index.matrix(
            _float_column(t, name) if name in t.column_names else None for t in tables
        )

    return index, {name: loader(name) for name in names}


def _float_column(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column as floats (nulls as NaN)."""
    values = table.column(name).to_numpy(zero_copy_only=False)
    return values if values.dtype.kind == "f" else values.astype(np.float64)


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
    *,
    layer_columns: tuple[LayerIndex, Mapping[str, Callable[[], MeasuredRows]]] | None = None,
) -> Trace:
    """Assemble a Trace from the chunk tables the recorder writes (vectorised, no step loop).

    Args:
        meta: The run's metadata (its ``layers`` table names the matrix columns).
        layer_tables: ``layers`` chunks in memory, in the order written.
        scalar_tables: ``scalars`` chunks, in the order written.
        recurrent_tables: ``recurrent`` chunks, in the order written.
        run_dir: The run directory the tables came from, if any.
        layer_columns: Instead of ``layer_tables``: the row index of chunks on disk and one
            loader per metric (the store reads a metric's column only when it is asked for).
    """
    layers = [LayerInfo.from_json(d) for d in meta.get("layers", [])]
    n_layers = len(layers)

    # Per-layer metrics: rows (step, layer, metric...) -> (steps, layers) matrices, each built
    # on first use by Trace.matrix.
    if layer_columns is None:
        layer_columns = _layer_columns_in_memory(layer_tables, n_layers)
    index, metrics = layer_columns
    steps = index.steps

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
