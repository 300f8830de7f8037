"""Traces: the recorded statistics of a run, their run-directory store, and loading."""

from .errors import TraceError
from .layers import LayerInfo
from .store import FORMAT_VERSION, RunWriter, load
from .trace import (
    LAYER_METRICS,
    STEP_SCALARS,
    GradRatio,
    RecurrentProfile,
    Trace,
    TraceFrames,
)

__all__ = [
    "FORMAT_VERSION",
    "LAYER_METRICS",
    "STEP_SCALARS",
    "GradRatio",
    "LayerInfo",
    "RecurrentProfile",
    "RunWriter",
    "Trace",
    "TraceError",
    "TraceFrames",
    "load",
]
