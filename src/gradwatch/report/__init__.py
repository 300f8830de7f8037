"""Report: plots, the self-contained HTML report, console tables and TensorBoard export.

matplotlib, jinja2 and rich (``pip install "gradwatch[report]"``) and tensorboard
(``pip install "gradwatch[tensorboard]"``) are optional: each is imported only by the
function that needs it, which raises an ImportError with the install command when missing.
"""

from .html import render_report, write_report
from .summary import RunSummary, summarize, verdict
from .tensorboard import export_tensorboard

__all__ = [
    "RunSummary",
    "export_tensorboard",
    "render_report",
    "summarize",
    "verdict",
    "write_report",
]
