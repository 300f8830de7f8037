"""What the framework callbacks share: checking watch options, and the end-of-run findings."""

from __future__ import annotations

import inspect
from typing import Any

from ..diagnosis import Finding, diagnose
from ..live import watch
from ..recording import Watch

# Arguments a callback fills in itself: the framework knows the model, the optimizer and
# where a step begins.
_OWN = ("model", "optimizer", "run_dir", "step_begin")


def check_watch_options(callback: str, options: dict[str, Any]) -> dict[str, Any]:
    """Refuse unknown ``gw.watch`` options now, at the callback, not at the first step.

    Raises:
        TypeError: Naming the unknown option and the ones ``gw.watch`` takes.
    """
    accepted = [n for n in inspect.signature(watch).parameters if n not in _OWN]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"{callback} got unknown `gw.watch` option(s) {unknown}. It passes these on to "
            f"`gw.watch`, which takes {accepted}; the model, optimizer and step come from the "
            "trainer."
        )
    return dict(options)


def critical_findings(w: Watch) -> list[Finding]:
    """The critical findings of a closed watch's trace, most severe first."""
    return [f for f in diagnose(w.trace) if f.severity == "critical"]


def describe(finding: Finding) -> str:
    """One line for a trainer's log: the rule, the message and the first remedy to try."""
    first = f" First thing to try: {finding.remedies[0].id}." if finding.remedies else ""
    return f"gradwatch found {finding.rule}: {finding.message}{first}"
