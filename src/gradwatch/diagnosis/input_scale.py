"""Inputs far from unit scale, told to the alarms they may cause.

Initialisations assume inputs of about unit scale; features in raw units or pixels in 0-255
scale the first layer's outputs, and its weights' gradients, by their RMS, so a rate that
suits the rest of the model is that many times too large for the first layer. The watch reads
the RMS of the model's first floating-point input at its first training forward
(``meta["model_input"]``, recording/inputs.py). Where it is :data:`INPUT_RMS_LIMIT` or more
and the model does not normalise it first (its first layer a norm layer), every finding at
warning or above is told so, after its own message, with its remedies kept: the inputs may
be the cause, or one of them.

Measured (a 64-64-64-10 ReLU MLP on scikit-learn's digits, SGD 0.05 + momentum, 300 steps):
standardised, the loss went 2.29 -> 0.048 (accuracy 0.987 on all digits, every first-layer
unit alive) with no finding; fed the raw pixels (0-16, RMS 7.7), 2.02 -> 0.21 (accuracy
0.949, 53% of the first layer's units dead on all digits, 69% by the rule's window), told
"Dead units ... ReLU's derivative is 0 there" with leaky ReLU, He init, BatchNorm and ELU as
remedies and a loss plateau, the inputs unnamed (the first layer's output std, 2.5, is within
poor_initialization's tenfold).

Example:
    >>> import numpy as np
    >>> from gradwatch.trace import Trace
    >>> t = Trace.from_arrays(["fc"], [0], {"grad_rms": np.ones((1, 1))})
    >>> t.meta["model_input"] = {"source": "arg0", "shape": [64, 64], "rms": 7.7, "mean": 4.9}
    >>> unscaled_inputs(t)["rms"]
    7.7
"""

from __future__ import annotations

import math
from typing import Any

from ..trace import Trace
from .finding import Finding, told_alarms

#: An input RMS at or above this is far from the unit scale initialisations assume (our
#: choice: five times it; standardised data sits near 1, images scaled to [0, 1] near 0.5,
#: ImageNet-normalised ones near 1, raw pixels in 0-255 near 100, digits' 0-16 at 7.7).
INPUT_RMS_LIMIT = 5.0

#: How inputs are standardised, as the alarms told here and poor_initialization say it.
HOW_TO_STANDARDISE = (
    "subtract the mean and divide by the std of each feature or channel, computed on the "
    "training data"
)


def input_rms(trace: Trace) -> float | None:
    """The RMS of the model's input as the watch read it (``meta["model_input"]``), or None
    where there is no finite one (no float input, an older trace)."""
    seen = trace.meta.get("model_input")
    rms = seen.get("rms") if isinstance(seen, dict) else None
    return float(rms) if isinstance(rms, (int, float)) and math.isfinite(rms) else None


def unscaled_inputs(trace: Trace) -> dict[str, Any] | None:
    """The trace's record of the model's input when its RMS is at least
    :data:`INPUT_RMS_LIMIT` and the first layer (the layer table is in depth order) is not a
    norm layer; else None."""
    rms = input_rms(trace)
    if rms is None or rms < INPUT_RMS_LIMIT:
        return None
    if trace.layers and trace.layers[0].role == "norm":
        return None  # (normalised before anything learns from it)
    return dict(trace.meta["model_input"])


def _sentence(seen: dict[str, Any]) -> str:
    mean = seen.get("mean")
    centred = f" (mean {mean:.3g})" if isinstance(mean, (int, float)) else ""
    return (
        f"The model's inputs (`{seen.get('source')}`) have an RMS of {seen['rms']:.3g}"
        f"{centred}, far from the unit scale initialisations assume: the first layer's "
        f"outputs and gradients scale with them. Standardise them ({HOW_TO_STANDARDISE})"
    )


def settle_input_scale(findings: list[Finding], trace: Trace) -> list[Finding]:
    """``findings`` with every alarm told that the inputs are far from unit scale (remedies
    kept), unless it says so itself (poor_initialization's ``input_rms_at_least``)."""
    seen = unscaled_inputs(trace)
    if seen is None:
        return findings
    return told_alarms(
        findings,
        _sentence(seen),
        skip=lambda f: "input_rms_at_least" in f.evidence,
        keep_remedies=True,
        model_input=seen,
    )
