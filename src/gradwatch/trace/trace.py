"""The Trace: everything a run recorded, as numpy arrays indexed by step and layer.

A Trace is read-only. Rules, plots and users read it; only the recorder and the store make
one. Layer statistics live in ``(steps, layers)`` float64 matrices (missing = NaN), per-step
scalars in 1-D arrays, recurrent input-gradient profiles in ``(steps, time)`` matrices (two
kinds: ``"whole"``, the gradient of the whole loss, and ``"last_position"``, the gradient of the
part of the loss at the last time step; see :data:`PROFILE_KINDS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from .layers import LayerInfo

#: The kinds of recurrent input-gradient profile. ``"whole"``: ``||dL/dx_t||`` of the whole loss
#: (every trace with recurrent layers has it). ``"last_position"``: ``||dl_T/dx_t||``, the part of
#: the loss that flows through the layer's output at the last time step T (for a language model,
#: the loss of the last position), so a loss with a term at every position does not hide how far
#: back one prediction's gradient reaches.
PROFILE_KINDS: tuple[str, ...] = ("whole", "last_position")
ProfileKind = Literal["whole", "last_position"]


class TraceFrames(NamedTuple):
    """Tidy pandas frames of a trace (see :meth:`Trace.to_pandas`)."""

    scalars: Any  # pandas.DataFrame: step, <scalar columns>
    layers: Any  # pandas.DataFrame: step, layer, depth, <metric columns>
    recurrent: Any  # pandas.DataFrame: step, layer, t, input_grad_norm, profile


@dataclass(frozen=True)
class GradRatio:
    """Gradient RMS of the first layer divided by that of the last, and where it was measured.

    The one definition of the "first/last gradient ratio" that every caller (lab, demo,
    report, verify) quotes, so one number is never printed two ways.

    Attributes:
        value: ``grad_rms(first) / grad_rms(last)``; NaN when not measured (1 = even flow,
            1e-6 = six orders of magnitude less gradient at the input side).
        first: Name of the input-side layer.
        last: Name of the output-side layer.
        steps: ``(first, last)`` step of the window the value describes; equal for one step.
        how: ``"median"`` (median over the window's steps) or ``"step"`` (one step).
    """

    value: float
    first: str
    last: str
    steps: tuple[int, int] | None
    how: Literal["median", "step"]

    @property
    def label(self) -> str:
        """Where the value comes from, in words: ``"median over steps 0-299"``."""
        if self.steps is None:
            return "not measured"
        if self.how == "step" or self.steps[0] == self.steps[1]:  # a one-step window
            return f"at step {self.steps[0]}"
        return f"median over steps {self.steps[0]}-{self.steps[1]}"


class MeasuredRows(NamedTuple):
    """The rows of a ``(steps, layers)`` matrix where anything was measured (a loader's
    compact answer for a sampled metric; see :meth:`Trace.matrix`)."""

    rows: np.ndarray  # row indices into Trace.steps, sorted
    values: np.ndarray  # (len(rows), layers) float64, NaN where not measured


@dataclass(frozen=True)
class RecurrentProfile:
    """Gradient norm reaching each input time step of one recurrent layer.

    Attributes:
        steps: Training steps where the profile was measured, shape ``(S,)``.
        values: ``(S, T)`` matrix of ``||dL/dx_t||``; ``t = T - 1`` is the last input,
            the closest to a loss on the final output. NaN where not measured.
        kind: ``"whole"`` (gradient of the whole loss) or ``"last_position"`` (gradient of the
            loss at the last time step only); see :data:`PROFILE_KINDS`.
    """

    steps: np.ndarray
    values: np.ndarray
    kind: ProfileKind = "whole"


class Trace:
    """A recorded (or hand-built) run.

    Build one with :func:`gradwatch.load`, ``Watch.trace`` or :meth:`Trace.from_arrays`.

    Example:
        >>> import numpy as np
        >>> from gradwatch.trace import LayerInfo, Trace
        >>> layers = [LayerInfo(name=f"l{i}", type="Linear", depth=i, num_params=10)
        ...           for i in range(3)]
        >>> t = Trace.from_arrays(layers, steps=[0, 1],
        ...                       metrics={"grad_rms": np.ones((2, 3))})
        >>> t.matrix("grad_rms").shape
        (2, 3)
    """

    def __init__(
        self,
        *,
        layers: Sequence[LayerInfo],
        steps: np.ndarray,
        metrics: Mapping[str, np.ndarray | Callable[[], np.ndarray | MeasuredRows]],
        scalar_steps: np.ndarray,
        scalars: Mapping[str, np.ndarray],
        recurrent: Mapping[str, RecurrentProfile],
        meta: Mapping[str, Any],
        run_dir: Path | None = None,
        last_position: Mapping[str, RecurrentProfile] | None = None,
    ) -> None:
        self._layers = tuple(layers)
        self._steps = _readonly(np.asarray(steps, dtype=np.int64))
        # A metric is an array, or a loader called on first use (a trace read from disk reads
        # a metric's column only when asked for it; see trace.store).
        self._metrics: dict[str, np.ndarray | MeasuredRows | Callable[[], Any]] = {
            k: v if callable(v) else _readonly(np.asarray(v, dtype=np.float64))
            for k, v in metrics.items()
        }
        self._scalar_steps = _readonly(np.asarray(scalar_steps, dtype=np.int64))
        self._scalars = {k: _readonly(np.asarray(v, dtype=np.float64)) for k, v in scalars.items()}
        self._profiles: dict[str, dict[str, RecurrentProfile]] = {
            "whole": dict(recurrent),
            "last_position": dict(last_position or {}),
        }
        self.meta: dict[str, Any] = dict(meta)
        self.run_dir = run_dir

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        layers: Sequence[LayerInfo] | Sequence[str],
        steps: Sequence[int] | np.ndarray,
        metrics: Mapping[str, np.ndarray | Sequence[Sequence[float]]],
        *,
        scalars: Mapping[str, np.ndarray | Sequence[float]] | None = None,
        scalar_steps: Sequence[int] | np.ndarray | None = None,
        recurrent: Mapping[str, tuple[Sequence[int], np.ndarray]] | None = None,
        last_position: Mapping[str, tuple[Sequence[int], np.ndarray]] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Trace:
        """Build a trace from arrays, e.g. to test a rule on a hand-made case.

        Args:
            layers: LayerInfo objects in forward order, or just their names (type "Linear").
            steps: Step index of each row of the metric matrices.
            metrics: metric name -> ``(len(steps), len(layers))`` array (NaN = missing).
            scalars: scalar name -> array aligned with ``scalar_steps``.
            scalar_steps: Steps of the scalar arrays; defaults to ``steps``.
            recurrent: layer name -> (steps, ``(S, T)`` input-gradient-norm matrix) of the
                whole loss.
            last_position: layer name -> (steps, ``(S, T)`` matrix) of the last position's
                loss only (the ``"last_position"`` profile kind).
            meta: Extra metadata (``config``, ``model`` ...).

        Raises:
            ValueError: When a shape does not match the steps and layers given.
        """
        infos = [
            layer
            if isinstance(layer, LayerInfo)
            else LayerInfo(name=str(layer), type="Linear", depth=i, num_params=0)
            for i, layer in enumerate(layers)
        ]
        step_arr = np.asarray(steps, dtype=np.int64).reshape(-1)
        mats: dict[str, np.ndarray] = {}
        for name, values in metrics.items():
            arr = np.asarray(values, dtype=np.float64)
            if arr.shape != (len(step_arr), len(infos)):
                raise ValueError(
                    f"metric {name!r} has shape {arr.shape}; expected (steps, layers) = "
                    f"({len(step_arr)}, {len(infos)}). Pass one row per step and one column "
                    "per layer."
                )
            mats[name] = arr
        s_steps = step_arr if scalar_steps is None else np.asarray(scalar_steps, np.int64)
        scal: dict[str, np.ndarray] = {}
        for name, svalues in (scalars or {}).items():
            arr = np.asarray(svalues, dtype=np.float64).reshape(-1)
            if arr.shape != (len(s_steps),):
                raise ValueError(
                    f"scalar {name!r} has {arr.shape[0]} values but there are {len(s_steps)} "
                    "scalar steps; pass `scalar_steps` or one value per step."
                )
            scal[name] = arr
        rec = _profiles_from_arrays(recurrent, "whole")
        last = _profiles_from_arrays(last_position, "last_position")
        # The schema builds Traces from tables, so it imports this module: import it here.
        from .schema import normalize_meta, stamp_meta

        full_meta = stamp_meta({"layers": [i.to_json() for i in infos]})
        full_meta = normalize_meta({**full_meta, **(meta or {})})
        return cls(
            layers=infos,
            steps=step_arr,
            metrics=mats,
            scalar_steps=s_steps,
            scalars=scal,
            recurrent=rec,
            last_position=last,
            meta=full_meta,
        )

    # ------------------------------------------------------------------ layers and steps
    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        """The layer table, in forward (depth) order."""
        return self._layers

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self._layers]

    def path_columns(self, *, main_path_only: bool = False) -> list[int]:
        """Columns of the layers that depth comparisons should use, in depth order.

        These are the layers with weights the gradient passes through (role ``"weight"`` or
        ``"attention"``); norms, embeddings, PReLU slopes and parameters owned by the model
        itself (``role`` ``"norm"``, ``"embedding"``, ``"activation"``, ``"root"``) are left
        out: they are layers, but not depth. A first/last or depth-trend comparison reads
        ``matrix(metric)[:, trace.path_columns()]``.

        Args:
            main_path_only: Keep only layers outside every residual branch
                (``LayerInfo.branch is None``): the layers the gradient must pass in series.
                Branches are parallel to the main path; see :meth:`branch_columns`.

        Example:
            >>> from gradwatch.trace import LayerInfo
            >>> t = Trace.from_arrays(
            ...     [LayerInfo("emb", "Embedding", 0, 8, role="embedding"),
            ...      LayerInfo("h.0.fc", "Linear", 1, 8, branch="h.0"),
            ...      LayerInfo("ln", "LayerNorm", 2, 8, role="norm"),
            ...      LayerInfo("head", "Linear", 3, 8)], [0], {})
            >>> t.path_columns(), t.path_columns(main_path_only=True)
            ([1, 3], [3])
        """
        return [
            col
            for col, layer in enumerate(self._layers)
            if layer.on_path and not (main_path_only and layer.branch is not None)
        ]

    def branch_columns(self) -> dict[str, list[int]]:
        """Residual branch name -> columns of its depth-counting layers, in depth order.

        Each layer counts in its innermost branch only (``LayerInfo.branch``).
        """
        out: dict[str, list[int]] = {}
        for col, layer in enumerate(self._layers):
            if layer.branch is not None and layer.on_path:
                out.setdefault(layer.branch, []).append(col)
        return out

    @property
    def layer_labels(self) -> list[str]:
        """Each layer's label ``L<depth> <name>`` (:attr:`LayerInfo.label`), in depth order."""
        return [layer.label for layer in self._layers]

    def layer_label(self, layer: int | str) -> str:
        """The label ``L<depth> <name>`` of a layer given by column index or module name.

        A name the trace does not hold is returned unchanged (a finding may name a module
        the trace of another run recorded), so a view never fails on it.

        Example:
            >>> Trace.from_arrays(["fc0", "fc1"], [0], {"grad_rms": [[1, 1]]}).layer_label("fc1")
            'L1 fc1'
        """
        if isinstance(layer, str):
            for info in self._layers:
                if info.name == layer:
                    return info.label
            return layer
        return self._layers[layer].label

    @property
    def steps(self) -> np.ndarray:
        """Step index of each row of :meth:`matrix` (sorted, int64)."""
        return self._steps

    @property
    def metrics(self) -> list[str]:
        """Names of the per-layer metrics this trace holds."""
        return sorted(self._metrics)

    @property
    def config(self) -> dict[str, Any]:
        """The recorder's configuration (``every``, ``sample_every`` ...)."""
        return dict(self.meta.get("config", {}))

    def __len__(self) -> int:
        return len(self._steps)

    def __repr__(self) -> str:
        where = f", run_dir={str(self.run_dir)!r}" if self.run_dir else ""
        return (
            f"Trace(layers={len(self._layers)}, steps={len(self._steps)}, "
            f"scalar_steps={len(self._scalar_steps)}{where})"
        )

    def _repr_html_(self) -> str:
        """A compact card for Jupyter: size, loss, first/last ratio, the gradient along depth."""
        from .cards import trace_card

        return trace_card(self)

    # ------------------------------------------------------------------ per-layer metrics
    def has_metric(self, metric: str) -> bool:
        return metric in self._metrics

    def _resolve(self, metric: str) -> np.ndarray | MeasuredRows:
        try:
            value = self._metrics[metric]
        except KeyError:
            raise KeyError(f"this trace has no metric {metric!r}; it has {self.metrics}") from None
        if callable(value):
            loaded = value()
            if isinstance(loaded, MeasuredRows):
                if len(loaded.rows) == len(self._steps):  # measured at every step: keep whole
                    value = _readonly(np.asarray(loaded.values, dtype=np.float64))
                else:
                    value = MeasuredRows(_readonly(loaded.rows), _readonly(loaded.values))
            else:
                value = _readonly(np.asarray(loaded, dtype=np.float64))
            self._metrics[metric] = value
        return value

    def matrix(self, metric: str) -> np.ndarray:
        """A ``(steps, layers)`` float64 array of one metric; NaN where not measured.

        Raises:
            KeyError: When the trace holds no such metric; the message lists those it holds.
        """
        value = self._resolve(metric)
        if isinstance(value, MeasuredRows):
            # A sampled metric of a loaded trace is kept as its measured rows only (a tenth
            # of the memory with sample_every=10); the full matrix is built for each caller.
            full = np.full((len(self._steps), len(self._layers)), np.nan)
            full[value.rows] = value.values
            return _readonly(full)
        return value

    def measured(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """The steps where ``metric`` was measured for at least one layer, and those rows.

        Sampled metrics (activations, update ratios) exist only on every
        ``sample_every``-th step; this drops the all-missing rows.
        """
        value = self._resolve(metric)
        if isinstance(value, MeasuredRows):
            return self._steps[value.rows], value.values
        mat = value
        keep = ~np.all(np.isnan(mat), axis=1) if mat.size else np.zeros(len(mat), bool)
        return self._steps[keep], mat[keep]

    def grad_ratio(
        self,
        at: Literal["median", "last"] | int = "median",
        *,
        first: int | None = None,
        last: int | None = None,
    ) -> GradRatio:
        """``grad_rms`` of layer column ``first`` over that of column ``last``, labelled.

        Args:
            at: ``"median"``: the median of the per-step ratio over every step where both
                were measured; ``"last"``: the ratio at the last such step; an int: the
                ratio at that training step (NaN if it was not measured there).
            first: Column of the input-side layer (default: the first of
                :meth:`path_columns`, so a norm or an embedding table is never one end).
            last: Column of the output-side layer (default: the last of :meth:`path_columns`).

        Example:
            >>> t = Trace.from_arrays(["in", "out"], [0, 1], {"grad_rms": [[1e-3, 1], [1e-4, 1]]})
            >>> r = t.grad_ratio("last"); (r.value, r.label)
            (0.0001, 'at step 1')
        """
        names = self.layer_names
        path = self.path_columns() or list(range(len(names)))
        if len(path) < 2 or "grad_rms" not in self._metrics:
            return GradRatio(math.nan, "", "", None, "median" if at == "median" else "step")
        first = path[0] if first is None else first
        last = path[-1] if last is None else last
        rms = self.matrix("grad_rms")
        lo, hi = rms[:, first], rms[:, last]
        pair = (names[first], names[last])
        if isinstance(at, (int, np.integer)) and not isinstance(at, bool):
            rows = np.flatnonzero(self._steps == at)
            if len(rows) == 0:
                return GradRatio(math.nan, *pair, (int(at), int(at)), "step")
            b = hi[rows[0]]
            value = float(lo[rows[0]] / b) if b > 0 and math.isfinite(b) else math.nan
            return GradRatio(value, *pair, (int(at), int(at)), "step")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = lo / hi
        if at == "last":
            ok = np.flatnonzero(np.isfinite(lo) & np.isfinite(hi) & (hi > 0))
            if len(ok) == 0:
                return GradRatio(math.nan, *pair, None, "step")
            step = int(self._steps[ok[-1]])
            return GradRatio(float(ratio[ok[-1]]), *pair, (step, step), "step")
        if at != "median":
            raise ValueError(f"expected `at` to be 'median', 'last' or a step, but got {at!r}")
        ok = np.flatnonzero(np.isfinite(ratio))
        if len(ok) == 0:
            return GradRatio(math.nan, *pair, None, "median")
        window = (int(self._steps[ok[0]]), int(self._steps[ok[-1]]))
        return GradRatio(float(np.median(ratio[ok])), *pair, window, "median")

    # ------------------------------------------------------------------ scalars
    @property
    def scalar_steps(self) -> np.ndarray:
        """Step index of each entry of :meth:`scalar` (sorted, int64)."""
        return self._scalar_steps

    @property
    def scalar_names(self) -> list[str]:
        return sorted(self._scalars)

    def has_scalar(self, name: str) -> bool:
        return name in self._scalars

    def scalar(self, name: str) -> np.ndarray:
        """A per-step scalar (``loss``, ``global_grad_norm``, ``skipped``, user scalars).

        Raises:
            KeyError: When the trace holds no such scalar.
        """
        try:
            return self._scalars[name]
        except KeyError:
            raise KeyError(
                f"this trace has no scalar {name!r}; it has {self.scalar_names}"
            ) from None

    def skipped_steps(self) -> dict[int, list[str]]:
        """Steps the optimizer skipped (``GradScaler`` found inf/NaN), each with the labels of
        the layers whose gradients held a non-finite entry, deepest first (backward order:
        where the overflow was first met).

        A layer list is empty where the step's ``nonfinite`` counts were not recorded.

        Example:
            >>> t = Trace.from_arrays(["fc0", "fc1"], [0, 1], {"nonfinite": [[0, 0], [0, 3]]},
            ...                       scalars={"skipped": [0, 1]})
            >>> t.skipped_steps()
            {1: ['L1 fc1']}
        """
        if "skipped" not in self._scalars:
            return {}
        flags = np.nan_to_num(self._scalars["skipped"], nan=0.0) > 0.5
        out: dict[int, list[str]] = {}
        counts = self.matrix("nonfinite") if self.has_metric("nonfinite") else None
        for step in self._scalar_steps[flags]:
            row = int(np.searchsorted(self._steps, step))
            labels: list[str] = []
            if counts is not None and row < len(self._steps) and self._steps[row] == step:
                bad = np.flatnonzero(np.nan_to_num(counts[row], nan=0.0) > 0)[::-1]
                labels = [self._layers[i].label for i in bad]
            out[int(step)] = labels
        return out

    # ------------------------------------------------------------------ recurrent
    @property
    def recurrent_layers(self) -> list[str]:
        """Names of the layers with an input-gradient profile (of any kind) over time steps."""
        names = [*self._profiles["whole"], *self._profiles["last_position"]]
        return list(dict.fromkeys(names))

    def profile_kinds(self, layer: str) -> tuple[ProfileKind, ...]:
        """The kinds of profile recorded for ``layer`` (``()`` if none), in PROFILE_KINDS order."""
        kinds: tuple[ProfileKind, ...] = ("whole", "last_position")
        return tuple(k for k in kinds if layer in self._profiles[k])

    def input_grad_profile(self, layer: str, kind: ProfileKind = "whole") -> RecurrentProfile:
        """``||dL/dx_t||`` for each input time step of a recurrent layer, per sampled step.

        Args:
            layer: The recurrent layer's name.
            kind: ``"whole"`` (default): the gradient of the whole loss. ``"last_position"``:
                the gradient of the loss at the last time step only (how far back one
                prediction's gradient reaches; traces written before it was recorded have
                only ``"whole"``; see ``docs/recording.md``).

        Raises:
            ValueError: For an unknown ``kind``.
            KeyError: When the trace has no such profile for ``layer``.
        """
        if kind not in PROFILE_KINDS:
            raise ValueError(
                f"Expected argument `kind` to be one of {list(PROFILE_KINDS)} but got {kind!r}."
            )
        try:
            return self._profiles[kind][layer]
        except KeyError:
            have = [n for n in self.recurrent_layers if n in self._profiles[kind]]
            raise KeyError(
                f"no {kind!r} input-gradient profile for layer {layer!r}; this trace has "
                f"{kind!r} profiles for {have}"
            ) from None

    # ------------------------------------------------------------------ export
    def to_pandas(self) -> TraceFrames:
        """Tidy pandas frames: per-step scalars, per-step-per-layer metrics, recurrent profiles."""
        import pandas as pd

        scalars = pd.DataFrame({"step": self._scalar_steps, **self._scalars})
        n_steps, n_layers = len(self._steps), len(self._layers)
        layer_cols: dict[str, Any] = {
            "step": np.repeat(self._steps, n_layers),
            "layer": np.tile(np.array(self.layer_names, dtype=object), n_steps),
            "depth": np.tile(np.arange(n_layers), n_steps),
        }
        for name in self.metrics:
            layer_cols[name] = self.matrix(name).reshape(-1)
        layers = pd.DataFrame(layer_cols)
        rec_parts = []
        for kind, profiles in self._profiles.items():
            for name, prof in profiles.items():
                s, t = prof.values.shape
                rec_parts.append(
                    pd.DataFrame(
                        {
                            "step": np.repeat(prof.steps, t),
                            "layer": name,
                            "t": np.tile(np.arange(t), s),
                            "input_grad_norm": prof.values.reshape(-1),
                            "profile": kind,
                        }
                    )
                )
        recurrent = (
            pd.concat(rec_parts, ignore_index=True)
            if rec_parts
            else pd.DataFrame(
                {
                    "step": pd.Series(dtype="int64"),
                    "layer": pd.Series(dtype=object),
                    "t": pd.Series(dtype="int64"),
                    "input_grad_norm": pd.Series(dtype="float64"),
                    "profile": pd.Series(dtype=object),
                }
            )
        )
        return TraceFrames(scalars=scalars, layers=layers, recurrent=recurrent)


def _profiles_from_arrays(
    profiles: Mapping[str, tuple[Sequence[int], np.ndarray]] | None, kind: ProfileKind
) -> dict[str, RecurrentProfile]:
    """Checked :class:`RecurrentProfile` objects of one kind from ``name -> (steps, (S, T))``."""
    out: dict[str, RecurrentProfile] = {}
    for name, (r_steps, values) in (profiles or {}).items():
        r = np.asarray(r_steps, dtype=np.int64).reshape(-1)
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 2 or v.shape[0] != len(r):
            arg = "recurrent" if kind == "whole" else kind
            raise ValueError(
                f"{arg} profile of {name!r} has shape {v.shape}; expected "
                f"({len(r)}, T): one row per step."
            )
        out[name] = RecurrentProfile(_readonly(r), _readonly(v), kind)
    return out


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr)
    arr.setflags(write=False)
    return arr
