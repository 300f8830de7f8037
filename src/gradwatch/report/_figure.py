"""The Figure class of every gradwatch plot: a matplotlib Figure that shows itself in Jupyter.

gradwatch draws without pyplot (no global state), so IPython's matplotlib integration,
which pyplot switches on, may not be active: a plain ``Figure`` returned by a cell would
print as ``<Figure size 750x420 with 1 Axes>``. This subclass has ``_repr_png_``, which
IPython's display system calls for any object, so a plot returned by a cell is drawn inline
with no ``%matplotlib inline`` and no pyplot import. Where the inline backend is active, its
own PNG formatter for ``Figure`` draws the same picture; the figure is never registered
with pyplot, so it is never drawn twice.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from ._style import figure_to_png

__all__ = ["GradwatchFigure"]


class GradwatchFigure(Figure):
    """A pyplot-free :class:`~matplotlib.figure.Figure` that renders itself as PNG in IPython."""

    def _repr_png_(self) -> bytes:
        """PNG bytes for IPython's display system (Jupyter's ``image/png`` output)."""
        return figure_to_png(self)
