"""Depth plots shade the norm layers (layers, but not depth) and say so in the legend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gradwatch.report import plots
from gradwatch.report._style import NORM_LABEL
from gradwatch.trace import LayerInfo, Trace

from .conftest import make_trace

NORMS = (1, 4)


def _with_norms() -> Trace:
    """The conftest trace with layers 1 and 4 declared LayerNorm (roles from class names)."""
    base = make_trace(n_layers=6, recurrent=False)
    layers = [
        LayerInfo(
            name=layer.name,
            type="LayerNorm" if i in NORMS else "Linear",
            depth=i,
            num_params=100,
            activation=None if i in NORMS else "Tanh",
        )
        for i, layer in enumerate(base.layers)
    ]
    metrics = {m: base.matrix(m) for m in base.metrics}
    return Trace.from_arrays(layers, base.steps, metrics, scalars={"loss": base.scalar("loss")})


DEPTH_PLOTS: list[tuple[str, Callable[[Trace], Any]]] = [
    ("flow", plots.plot_gradient_flow),
    ("gain", plots.plot_backward_gain),
    ("health", plots.plot_activation_health),
    ("stats", plots.plot_activation_stats),
    ("theory", lambda t: plots.plot_theory_overlay(t, 0.5)),
]


def _bands(ax: Any) -> list[tuple[float, float]]:
    """x extents of the grey norm bands drawn on ``ax``."""
    from matplotlib.colors import to_hex

    out = []
    for patch in ax.patches:
        if to_hex(patch.get_facecolor(), keep_alpha=False) == "#9e9e9e":
            # axvspan draws a Rectangle in data x, axes-fraction y
            out.append((float(patch.get_x()), float(patch.get_x() + patch.get_width())))
    return sorted(out)


@pytest.mark.parametrize(("key", "plot"), DEPTH_PLOTS, ids=[k for k, _ in DEPTH_PLOTS])
def test_norm_layers_are_shaded_with_a_legend_entry(key: str, plot: Callable[[Trace], Any]) -> None:
    """Each norm column gets one band centred on it, and the legend names the band once."""
    fig = plot(_with_norms())
    assert fig.gradwatch_data.norm_layers == NORMS
    ax = fig.axes[0]
    bands = _bands(ax)
    assert len(bands) == len(NORMS)
    for (lo, hi), col in zip(bands, NORMS, strict=True):
        assert lo < col < hi and hi - lo < 1  # inside the column, not over its neighbours
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels.count(NORM_LABEL) == 1
    assert plots.figure_to_png(fig)[:4] == b"\x89PNG"


@pytest.mark.parametrize(("key", "plot"), DEPTH_PLOTS, ids=[k for k, _ in DEPTH_PLOTS])
def test_no_norm_layers_no_band(key: str, plot: Callable[[Trace], Any]) -> None:
    """A model without norm layers gets no band and no legend entry for one."""
    fig = plot(make_trace(recurrent=False))
    assert fig.gradwatch_data.norm_layers == ()
    ax = fig.axes[0]
    assert _bands(ax) == []
    assert NORM_LABEL not in [t.get_text() for t in ax.get_legend().get_texts()]


def test_figures_display_in_ipython_as_png() -> None:
    """Every plot's Figure has IPython's PNG hook (what Jupyter calls for an output)."""
    fig = plots.plot_gradient_flow(make_trace(recurrent=False))
    png = fig._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png == plots.figure_to_png(fig)


def test_heatmap_marks_norm_rows_at_its_edge() -> None:
    """The heatmap keeps its cells visible: norm rows get a ◀ just right of the axes."""
    from gradwatch.report.figures.heatmap import NORM_ROW_LABEL

    fig = plots.plot_heatmap(_with_norms())
    assert fig.gradwatch_data.norm_layers == NORMS
    ax = fig.axes[0]
    [marks] = [line for line in ax.lines if line.get_label() == NORM_ROW_LABEL]
    assert list(marks.get_ydata()) == list(NORMS)
    assert all(1.0 < x < 1.05 for x in marks.get_xdata())  # axes fraction: just outside
    assert NORM_ROW_LABEL in [t.get_text() for t in ax.get_legend().get_texts()]
    plain = plots.plot_heatmap(make_trace(recurrent=False))
    assert not any(line.get_label() == NORM_ROW_LABEL for line in plain.axes[0].lines)
