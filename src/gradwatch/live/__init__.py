"""Live: catch the problem while the run is training.

``watch`` (``gw.watch``) records and, at each flush, runs the diagnosis rules on the steps so
far (:class:`LiveDiagnosis`), reports new findings (``on_finding``), appends them to
``findings.jsonl``, and streams per-layer scalars to TensorBoard or wandb. ``gradwatch watch
RUN_DIR`` shows a run being written by another process (:mod:`gradwatch.live.view`).
"""

from .findings_log import FINDINGS_FILE, read_findings
from .online import MAX_SHARE, Change, GradientProblem, LiveDiagnosis, OnFinding
from .stream import STREAM_METRICS, TensorBoardStream, WandbStream
from .watch import watch

__all__ = [
    "FINDINGS_FILE",
    "MAX_SHARE",
    "STREAM_METRICS",
    "Change",
    "GradientProblem",
    "LiveDiagnosis",
    "OnFinding",
    "TensorBoardStream",
    "WandbStream",
    "read_findings",
    "watch",
]
