"""gradwatch: see, explain and fix vanishing and exploding gradients in PyTorch models.

Example:
    >>> import gradwatch as gw
    >>> with gw.watch(model, optimizer, run_dir="runs/exp1") as w:  # doctest: +SKIP
    ...     ...
    >>> findings = gw.diagnose(gw.load("runs/exp1"))  # doctest: +SKIP

Importing gradwatch is cheap and has no side effects: the public names below are loaded
from their sub-packages (and torch imported) on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name -> (module, attribute); an empty attribute exports the module itself (a public
# sub-module, imported on first use). Keep in sync with __all__ and the TYPE_CHECKING block
# (tests/test_public_api.py checks that they agree).
_EXPORTS: dict[str, tuple[str, str]] = {
    "watch": ("gradwatch.live", "watch"),
    "GradientProblem": ("gradwatch.live", "GradientProblem"),
    "Watch": ("gradwatch.recording", "Watch"),
    "load": ("gradwatch.trace", "load"),
    "Trace": ("gradwatch.trace", "Trace"),
    "TraceError": ("gradwatch.trace", "TraceError"),
    "LayerInfo": ("gradwatch.trace", "LayerInfo"),
    "Finding": ("gradwatch.diagnosis", "Finding"),
    "RemedyHint": ("gradwatch.diagnosis", "RemedyHint"),
    "diagnose": ("gradwatch.diagnosis", "diagnose"),
    "Thresholds": ("gradwatch.diagnosis", "Thresholds"),
    "theory": ("gradwatch.theory", ""),
    "prescribe": ("gradwatch.remedies", "prescribe"),
    "verify": ("gradwatch.lab.verify", "verify"),
    "Prescription": ("gradwatch.remedies", "Prescription"),
    "remedies": ("gradwatch.remedies", ""),
    "write_report": ("gradwatch.report", "write_report"),
    "export_tensorboard": ("gradwatch.report", "export_tensorboard"),
    "lab": ("gradwatch.lab", ""),
}

__all__ = [
    "Finding",
    "GradientProblem",
    "LayerInfo",
    "Prescription",
    "RemedyHint",
    "Thresholds",
    "Trace",
    "TraceError",
    "Watch",
    "__version__",
    "diagnose",
    "export_tensorboard",
    "lab",
    "load",
    "prescribe",
    "remedies",
    "theory",
    "verify",
    "watch",
    "write_report",
]

if TYPE_CHECKING:
    from . import lab, remedies, theory
    from .diagnosis import Finding, RemedyHint, Thresholds, diagnose
    from .lab.verify import verify
    from .live import GradientProblem, watch
    from .recording import Watch
    from .remedies.prescribe import Prescription, prescribe
    from .report import export_tensorboard, write_report
    from .trace import LayerInfo, Trace, TraceError, load


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'gradwatch' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = getattr(mod, attr) if attr else mod
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
