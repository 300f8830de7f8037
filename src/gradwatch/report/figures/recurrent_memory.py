"""Recurrent memory: the gradient reaching each input position, and the memory horizon."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gradwatch.trace import ProfileKind, Trace

from .._style import DASHES, MARKERS, OKABE_ITO, attach, moment_colours, new_figure, set_title, text
from ._common import positive, select_steps

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "RecurrentMemoryData",
    "memory_horizon",
    "plot_recurrent_memory",
    "recurrent_memory_data",
]


@dataclass(frozen=True)
class RecurrentMemoryData:
    """Gradient reaching each input position of a recurrent layer, by distance to the loss.

    Attributes:
        layer: The recurrent layer.
        distance: ``0 .. T-1``; distance 0 is the last input (closest to the loss).
        steps: Training steps drawn, shape ``(k,)``.
        values: ``(k, T)`` ``‖∂L/∂x_t‖`` ordered by distance (``values[:, d]`` is input
            ``T - 1 - d``).
        threshold: Relative level that defines the horizon.
        horizons: Per drawn step, the first distance where the gradient is below
            ``threshold`` times the gradient at distance 0, or ``None`` when it never is
            within the sequence.
        kind: The profile drawn: ``"last_position"`` (the gradient of the last position's
            loss alone) or ``"whole"`` (of the whole loss).
    """

    layer: str
    distance: np.ndarray
    steps: np.ndarray
    values: np.ndarray
    threshold: float
    horizons: list[int | None]
    kind: ProfileKind = "whole"


def memory_horizon(row: np.ndarray, threshold: float) -> int | None:
    """The first distance where ``row`` (ordered by distance) is below ``threshold * row[0]``.

    ``None`` when the gradient at distance 0 is not positive and finite, or never falls that
    far within the sequence. The TensorBoard export writes the same number.

    Example:
        >>> memory_horizon(np.array([1.0, 0.1, 1e-4]), 1e-3)
        2
    """
    g0 = row[0]
    if not (np.isfinite(g0) and g0 > 0):
        return None
    below = np.flatnonzero(np.isfinite(row) & (row < threshold * g0))
    return int(below[0]) if len(below) else None


def recurrent_memory_data(
    trace: Trace,
    layer: str | None = None,
    *,
    threshold: float = 1e-3,
    steps: Sequence[int] | None = None,
    moments: int = 3,
    kind: ProfileKind | None = None,
) -> RecurrentMemoryData:
    """The data of :func:`plot_recurrent_memory`.

    Args:
        trace: The run.
        layer: A recurrent layer name; the first one recorded by default.
        threshold: The memory horizon is the first distance where the gradient falls below
            ``threshold`` times the gradient reaching the last input (1e-3 by default: three
            orders of magnitude, beyond which an input's influence on learning is negligible).
        steps: Training steps to draw; by default ``moments`` spread over the measured ones.
        moments: How many steps to pick when ``steps`` is not given.
        kind: Which profile: by default the last position's when the trace has it (a
            language model's whole-loss profile is flat: every input has a loss term next to
            it, so only one position's loss shows how far back its gradient reaches; for a
            loss on the last output the two agree), else the whole loss's.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"Expected argument `threshold` in (0, 1) but got {threshold}.")
    if layer is None:
        if not trace.recurrent_layers:
            raise ValueError(
                "this trace has no recurrent input-gradient profile; it is recorded for "
                "nn.RNN/LSTM/GRU layers on sampled steps."
            )
        layer = trace.recurrent_layers[0]
    if kind is None:
        kind = "last_position" if "last_position" in trace.profile_kinds(layer) else "whole"
    prof = trace.input_grad_profile(layer, kind)
    keep = np.any(np.isfinite(prof.values), axis=1)
    if not np.any(keep):
        raise ValueError(f"the input-gradient profile of {layer!r} holds no measured value.")
    all_steps, rows = prof.steps[keep], prof.values[keep][:, ::-1]
    sel_steps, sel_rows = select_steps(all_steps, rows, steps, moments, f"profile of {layer}")
    horizons = [memory_horizon(r, threshold) for r in sel_rows]
    return RecurrentMemoryData(
        layer,
        np.arange(rows.shape[1]),
        sel_steps,
        np.ascontiguousarray(sel_rows),
        threshold,
        horizons,
        kind,
    )


def plot_recurrent_memory(
    trace: Trace,
    layer: str | None = None,
    *,
    threshold: float = 1e-3,
    steps: Sequence[int] | None = None,
    moments: int = 3,
    kind: ProfileKind | None = None,
) -> Figure:
    """Gradient reaching each input step vs its distance to the loss (log scale).

    The dotted vertical line is the memory horizon at the last drawn step: inputs further
    back than it receive less than ``threshold`` of the gradient the last input gets.

    Example:
        >>> fig = plot_recurrent_memory(trace, "rnn")  # doctest: +SKIP
    """
    data = recurrent_memory_data(
        trace, layer, threshold=threshold, steps=steps, moments=moments, kind=kind
    )
    fig, ax = new_figure()
    colours = moment_colours(len(data.steps))
    for i, (step, row) in enumerate(zip(data.steps, data.values, strict=True)):
        ax.plot(
            data.distance,
            positive(row),
            color=colours[i],
            marker=MARKERS[i % len(MARKERS)],
            markersize=3,
            linestyle=DASHES[i % len(DASHES)],
            label=f"step {int(step)}",
        )
    last_row, horizon = data.values[-1], data.horizons[-1]
    if np.isfinite(last_row[0]) and last_row[0] > 0:
        ax.axhline(
            data.threshold * last_row[0],
            color="#777777",
            linewidth=0.8,
            linestyle="--",
            label=f"{data.threshold:g} × gradient at distance 0",
        )
    if horizon is not None:
        ax.axvline(
            horizon,
            color=OKABE_ITO[1],
            linestyle=":",
            linewidth=1.5,
            label=f"memory horizon: {horizon} steps",
        )
    ax.set_yscale("log")
    ax.set_xlabel("distance to the loss  (input time steps back from the last)")
    whose = "ℓ_T" if data.kind == "last_position" else "L"
    ax.set_ylabel(f"‖∂{whose}/∂x_t‖  (loss units per input unit)", fontsize=9)
    ax.legend(fontsize=8)
    set_title(
        ax,
        f"Recurrent memory of {text(data.layer) or '(root)'}: gradient "
        + ("of the last position's loss " if data.kind == "last_position" else "")
        + "reaching each input",
        "Look for: a straight fall here = exponential forgetting; the horizon = usable memory",
    )
    return attach(fig, data)
