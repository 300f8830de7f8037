"""Shared look of every gradwatch figure: colour-blind-safe colours, sizes, label escaping, PNG.

Colours come from the Okabe-Ito palette (distinguishable under the common colour-vision
deficiencies) for categories, and from cividis/viridis (perceptually uniform, readable in
grey scale) for ordered things such as "early -> late in training" or a colour scale.
Lines also differ by marker and dash so a figure still reads when printed in grey.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradwatch.trace.layers import layer_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = 'pip install "gradwatch[report]"'

#: Okabe-Ito, reordered so the first colours have the most contrast on white (yellow last).
OKABE_ITO: tuple[str, ...] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#E69F00",  # orange
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow
)
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*")
DASHES: tuple[str, ...] = ("-", "--", "-.", ":")

#: Width x height in inches at :data:`DPI`; 7.5 x 4.2 in -> 750 x 420 px, the width the HTML
#: report shows, so 9-10 pt text stays readable without zooming.
FIGSIZE: tuple[float, float] = (7.5, 4.2)
DPI = 100


def require_matplotlib() -> None:
    """Raise a clear ImportError when the optional matplotlib dependency is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"gradwatch's plots need matplotlib, which is not installed. Install it with "
            f"`{INSTALL_HINT}`."
        ) from exc


def new_figure(figsize: tuple[float, float] = FIGSIZE, ncols: int = 1) -> tuple[Figure, Any]:
    """A pyplot-free Figure (no global state) with ``ncols`` axes and gradwatch's rc style.

    The figure shows itself inline in Jupyter when a cell returns it (see ``_figure``).
    """
    require_matplotlib()
    from ._figure import GradwatchFigure

    fig = GradwatchFigure(figsize=figsize, dpi=DPI, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=True)
    for ax in [axes] if ncols == 1 else list(axes):
        ax.grid(True, which="major", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.tick_params(labelsize=9)
    return fig, axes


def moment_colours(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` colours from early (dark blue) to late (olive-yellow) along cividis.

    The very light end of cividis is skipped: it is hard to see on a white background.
    """
    from matplotlib import colormaps

    cmap = colormaps["cividis"]
    if n <= 1:
        return [cmap(0.0)]
    return [cmap(0.05 + 0.75 * i / (n - 1)) for i in range(n)]


def set_title(ax: Any, what: str, look_for: str) -> None:
    """Two-line title: what the plot shows, then what to look for in it."""
    ax.set_title(f"{what}\n{look_for}", fontsize=10, loc="left")


def text(s: object) -> str:
    """Escape a user-supplied name for matplotlib text: ``$`` would start mathtext."""
    return str(s).replace("$", r"\$")


def layer_ticks(ax: Any, names: list[str], axis: str = "x") -> None:
    """Label the depth axis with each layer's ``L<depth> <name>`` when few and short, else
    with ``L<depth>`` alone (the depth axis is the trace's column index, which is the depth).
    """
    n = len(names)
    if n == 0:
        return
    labels = [text(layer_label(i, s)) for i, s in enumerate(names)]
    if n <= 16 and max(len(s) for s in labels) <= 28:
        ticks = list(range(n))
        if axis == "x":
            ax.set_xticks(ticks, labels, rotation=35, ha="right", fontsize=8)
        else:
            ax.set_yticks(ticks, labels, fontsize=8)
    else:
        from matplotlib.ticker import FuncFormatter, MaxNLocator

        locator = MaxNLocator(integer=True, nbins=12)
        target = ax.xaxis if axis == "x" else ax.yaxis
        target.set_major_locator(locator)
        target.set_major_formatter(FuncFormatter(lambda v, _pos: f"L{round(v)}"))


#: Colour of the band behind a norm layer's column in depth plots.
NORM_SHADE = "#9e9e9e"
NORM_LABEL = "norm layer (grey band)"


def norm_columns(layers: Any) -> tuple[int, ...]:
    """Columns (depth positions) of the norm layers among ``layers`` (``LayerInfo`` s)."""
    return tuple(i for i, layer in enumerate(layers) if layer.role == "norm")


def mark_norm_layers(ax: Any, columns: tuple[int, ...] | list[int]) -> None:
    """Shade each norm layer's column of a depth plot and label the shade once for the legend.

    Norm layers are layers (they have parameters and gradients) but not depth: the rules
    skip them in depth comparisons, so a reader should see which points they are. Call it
    before ``ax.legend()``.
    """
    for k, col in enumerate(columns):
        ax.axvspan(
            col - 0.4,
            col + 0.4,
            color=NORM_SHADE,
            alpha=0.22,
            linewidth=0,
            zorder=0,
            label=NORM_LABEL if k == 0 else "_nolegend_",
        )


def attach(fig: Figure, data: Any) -> Figure:
    """Keep the plotted data on the figure (``fig.gradwatch_data``) so tests can check it."""
    fig.gradwatch_data = data  # type: ignore[attr-defined]
    return fig


def figure_to_png(fig: Figure, dpi: int | None = None) -> bytes:
    """Render a figure to PNG bytes (Agg, no pyplot).

    Example:
        >>> png = figure_to_png(plot_loss(trace))  # doctest: +SKIP
    """
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def plot_step_rows(
    ax: Any, x: Any, steps: Any, rows: Any
) -> list[tuple[float, float, float, float]]:
    """One line per recorded step along ``x`` (the depth axis), coloured from early to late
    and told apart by marker and dash too (readable in grey and by colour-blind readers).
    Returns the colour of each step's line."""
    colours = moment_colours(len(steps))
    for i, (step, row) in enumerate(zip(steps, rows, strict=True)):
        ax.plot(
            x,
            row,
            color=colours[i],
            marker=MARKERS[i % len(MARKERS)],
            markersize=4,
            linestyle=DASHES[i % len(DASHES)],
            label=f"step {int(step)}",
        )
    return colours
