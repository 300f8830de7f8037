"""Traces: the recorded statistics of a run, their format, their run-directory store, loading.

The recorder builds its chunks and metadata through the schema functions exported here
(``layer_table``, ``scalar_table``, ``recurrent_table``, ``run_meta``, ``trace_from_tables``),
so the format is defined in one module (``schema``) and nowhere else.
"""

from .errors import TraceError
from .layers import LayerInfo, layer_label
from .schema import (
    CHUNK_KINDS,
    FORMAT_VERSION,
    LAYER_METRICS,
    STEP_SCALARS,
    layer_table,
    recurrent_table,
    run_meta,
    scalar_table,
    trace_from_tables,
)
from .store import RunWriter, load
from .trace import PROFILE_KINDS, GradRatio, ProfileKind, RecurrentProfile, Trace, TraceFrames

__all__ = [
    "CHUNK_KINDS",
    "FORMAT_VERSION",
    "LAYER_METRICS",
    "PROFILE_KINDS",
    "STEP_SCALARS",
    "GradRatio",
    "LayerInfo",
    "ProfileKind",
    "RecurrentProfile",
    "RunWriter",
    "Trace",
    "TraceError",
    "TraceFrames",
    "layer_label",
    "layer_table",
    "load",
    "recurrent_table",
    "run_meta",
    "scalar_table",
    "trace_from_tables",
]
