"""The rules, one module each; :data:`RULES` maps every rule id to its ``check`` function.

Each ``check(trace, thresholds) -> Finding | None`` is a pure function of a Trace and its own
threshold group (``Thresholds.<rule id>``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...trace import Trace
from ..finding import RULE_IDS, Finding
from . import (
    collapsing_weights,
    dead_units,
    exploding_gradient,
    loss_plateau,
    nonfinite_gradient,
    poor_initialization,
    saturated_activation,
    short_memory,
    stalled_early_layers,
    unstable_updates,
    vanishing_gradient,
)

RuleFn = Callable[[Trace, Any], "Finding | None"]

#: rule id -> check function, in RULE_IDS order (the tie-break order of findings).
RULES: dict[str, RuleFn] = {
    m.RULE: m.check
    for m in (
        vanishing_gradient,
        exploding_gradient,
        nonfinite_gradient,
        stalled_early_layers,
        collapsing_weights,
        loss_plateau,
        saturated_activation,
        dead_units,
        poor_initialization,
        short_memory,
        unstable_updates,
    )
}

if tuple(RULES) != RULE_IDS:  # pragma: no cover - a module/id mismatch is a programming error
    raise RuntimeError(f"rule modules {tuple(RULES)} do not match RULE_IDS {RULE_IDS}")

__all__ = ["RULES", "RuleFn"]
