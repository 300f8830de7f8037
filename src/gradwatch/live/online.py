"""Online diagnosis: the rules, run on the host at each flush, while the run trains.

At each flush the recorder hands over the tables it just wrote (no device sync is added:
they are on the host already). :class:`LiveDiagnosis` keeps them (:class:`HostTables`) and
runs ``diagnose`` on the trace of every step so far, so a finding seen live is exactly what
``gw.diagnose`` says afterwards on the same steps. New or worsened findings (a rule that had
not fired, or fires at a higher severity) are appended to ``findings.jsonl`` in the run
directory and handed to ``on_finding``.

Cost: a check reads every step so far, so its cost grows with the run. To keep the rules
under :data:`MAX_SHARE` of the training time, a check waits until training has run
``cost / MAX_SHARE`` seconds since the last one (with small models, a few flushes). A flush
holding a non-finite gradient or a skipped step is always checked at once, and so is the
last flush (``close``): a NaN is reported at the flush that wrote it, and the final answer
is the whole run's.
"""

from __future__ import annotations

import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pyarrow as pa

from ..diagnosis import SEVERITY_RANK, Finding, diagnose
from ..recording import Flush, Watch
from .findings_log import FINDINGS_FILE, FindingsLog
from .tables import HostTables

#: What to do with a new finding: a word, or a function called with the Finding.
OnFinding = Literal["warn", "raise", "stop"] | Callable[[Finding], Any]
ON_FINDING_WORDS: tuple[str, ...] = ("warn", "raise", "stop")

#: Most of the training time live checks may take (a check costing 50 ms waits for 5 s of
#: training since the previous one). Flushes with non-finite values are checked regardless;
#: 0 checks every flush.
MAX_SHARE = 0.01


class FindingsSink(Protocol):
    """Where a check's findings are also written (a TensorBoard or wandb stream)."""

    def write_findings(self, step: int, findings: list[Finding]) -> None: ...


class GradientProblem(RuntimeError):  # noqa: N818 - the name users catch, per the design
    """Raised by ``gw.watch(..., on_finding="raise")`` at the step after a finding's flush.

    The run directory is complete up to that flush (the chunks are written before the rules
    run), so ``gw.load(run_dir)`` reads every step up to the problem.

    Attributes:
        finding: The finding that stopped the run.
        step: Steps recorded when it was seen (the flush's end).
    """

    def __init__(self, finding: Finding, step: int) -> None:
        self.finding = finding
        self.step = step
        super().__init__(
            f"gradwatch stopped training at step {step}: {finding.severity} {finding.rule} "
            f"({_layers_text(finding)}): {finding.message} Load the run with gw.load(run_dir) "
            "to see every step up to here, or pass on_finding='warn' to keep training."
        )


@dataclass(frozen=True)
class Change:
    """A finding seen live that is new or worse than before.

    Attributes:
        finding: The finding, as ``diagnose`` returned it.
        step: Steps recorded when it was seen (the flush's end): the evidence is in
            steps ``< step``.
        change: ``"new"`` (the rule had not fired) or ``"worsened"`` (higher severity).
    """

    finding: Finding
    step: int
    change: Literal["new", "worsened"]

    def to_json(self) -> dict[str, Any]:
        return {"seen_at_step": self.step, "change": self.change, **self.finding.to_json()}


def check_on_finding(on_finding: Any) -> OnFinding:
    """``on_finding`` checked: one of the words or a callable.

    Raises:
        ValueError: Naming the value and the choices.
    """
    if callable(on_finding) or on_finding in ON_FINDING_WORDS:
        out: OnFinding = on_finding
        return out
    raise ValueError(
        f"Expected argument `on_finding` to be 'warn', 'raise', 'stop' or a function taking "
        f"a Finding, but got {on_finding!r}. Pass e.g. `on_finding='raise'` to stop at the "
        "first problem."
    )


def check_min_severity(min_severity: Any) -> str:
    """``min_severity`` checked: ``"info"``, ``"warning"`` or ``"critical"``.

    Raises:
        ValueError: Naming the value and the choices.
    """
    if isinstance(min_severity, str) and min_severity in SEVERITY_RANK:
        return min_severity
    raise ValueError(
        f"Expected argument `min_severity` to be one of ['info', 'warning', 'critical'] but got"
        f" {min_severity!r}. Pass e.g. `min_severity='critical'` to hear only of "
        "critical findings."
    )


class LiveDiagnosis:
    """A flush listener that diagnoses the run so far and reports what is new or worse.

    Attach it with ``watch.add_flush_listener(LiveDiagnosis(...))``; ``gw.watch(...,
    on_finding=...)`` does this for you.

    Args:
        on_finding: ``"warn"`` (one line on stderr per new finding), ``"raise"`` (raise
            :class:`GradientProblem` from the flush), ``"stop"`` (warn and set
            ``watch.should_stop``), or a function called with each new Finding.
        min_severity: Findings below this severity are still logged to ``findings.jsonl``
            but not handed to ``on_finding``.
        max_share: Most of the training time checks may take (default :data:`MAX_SHARE`;
            0: check at every flush).
        sinks: Streams told each check's findings (``write_findings(step, findings)``),
            before ``on_finding`` acts.

    Attributes:
        findings: The findings of the last check (what ``gw.diagnose`` says on the steps
            flushed by then).
        changes: Every new or worsened finding seen, in order.
        checks: ``(steps recorded, seconds taken)`` of each check, in order.
    """

    def __init__(
        self,
        on_finding: OnFinding = "warn",
        *,
        min_severity: str = "warning",
        max_share: float | None = None,
        sinks: Sequence[FindingsSink] = (),
    ) -> None:
        self.on_finding = check_on_finding(on_finding)
        self.min_severity = check_min_severity(min_severity)
        self.max_share = MAX_SHARE if max_share is None else float(max_share)
        self.sinks = tuple(sinks)
        self.findings: list[Finding] = []
        self.changes: list[Change] = []
        self.checks: list[tuple[int, float]] = []
        self._tables = HostTables()
        self._worst: dict[str, int] = {}  # rule -> highest severity rank seen
        self._log: FindingsLog | None = None
        self._log_checked = False
        self._ready_at = 0.0  # perf_counter time after which the next check may run
        self._broken = False
        # The notes of the diagnosis told so far, each once a run, known by their words
        # before the first number (the counts they quote move from flush to flush).
        self._noted: set[str] = set()

    # ------------------------------------------------------------------ the listener
    def __call__(self, watch: Watch, flush: Flush) -> None:
        if self._broken:
            return
        self._tables.add(flush.tables, watch.num_layers)
        urgent = _has_nonfinite(flush.tables)
        if not (flush.final or urgent or time.perf_counter() >= self._ready_at):
            return
        started = time.perf_counter()
        # The metadata is built only for a check: its layer table alone cost ~5 ms a flush
        # on a 50-layer model (W1), more than the rest of a flush.
        trace = self._tables.trace(_meta(watch, flush), watch.run_dir)
        try:
            findings = diagnose(trace)
        except Exception as exc:  # a rule's bug must not end the user's training
            self._broken = True
            warnings.warn(
                f"gradwatch's live diagnosis failed ({type(exc).__name__}: {exc}) and is off "
                "for the rest of this run; recording goes on, and gw.diagnose(gw.load(run_dir)) "
                "still works afterwards. Please report this with the traceback.",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        cost = time.perf_counter() - started
        self.checks.append((flush.end_step, cost))
        if self.max_share:
            self._ready_at = time.perf_counter() + cost / self.max_share
        self.findings = findings
        for sink in self.sinks:
            sink.write_findings(flush.end_step, findings)
        self._report(watch, flush, self._changes(findings, flush.end_step))
        self._tell_notes(findings.notes, flush.end_step)

    def _tell_notes(self, notes: Sequence[str], step: int) -> None:
        """Each note of the diagnosis (a model trained in eval mode, a loss given outputs of
        the wrong kind, that no finding names yet), once a run, on stderr where findings are
        printed ("warn", "stop"): it is no finding, so a callable ``on_finding`` or "raise"
        is not handed it."""
        if self.on_finding not in ("warn", "stop"):
            return
        for note in notes:
            key = re.split(r"\d", note, maxsplit=1)[0]
            if key in self._noted:
                continue
            self._noted.add(key)
            if _is_rank0():
                print(f"gradwatch: step {step}: note: {note}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ what changed
    def _changes(self, findings: list[Finding], step: int) -> list[Change]:
        out = []
        for f in findings:
            rank = SEVERITY_RANK[f.severity]
            before = self._worst.get(f.rule)
            if before is None or rank > before:
                out.append(Change(f, step, "new" if before is None else "worsened"))
                self._worst[f.rule] = rank
        self.changes.extend(out)
        return out

    def _report(self, watch: Watch, flush: Flush, changes: list[Change]) -> None:
        if not changes:
            return
        log = self._findings_log(watch)
        if log is not None:
            for c in changes:
                log.append(c.to_json())
        floor = SEVERITY_RANK[self.min_severity]
        due = [c for c in changes if SEVERITY_RANK[c.finding.severity] >= floor]
        if not due:
            return
        action = self.on_finding
        if callable(action):
            for c in due:
                action(c.finding)
            return
        if action in ("warn", "stop") and _is_rank0():
            for c in due:
                print_finding(c)
        if action == "stop":
            watch.should_stop = True
        elif action == "raise":
            if flush.final and sys.exc_info()[1] is not None:
                return  # close() while an error leaves the `with`: do not hide that error
            raise GradientProblem(due[0].finding, flush.end_step)

    def _findings_log(self, watch: Watch) -> FindingsLog | None:
        if not self._log_checked:
            self._log_checked = True
            if watch.run_dir is not None and _is_rank0():
                self._log = FindingsLog(watch.run_dir / FINDINGS_FILE)
        return self._log


# ---------------------------------------------------------------------- helpers
def _meta(watch: Watch, flush: Flush) -> dict[str, Any]:
    # The metadata the run directory will hold (layer table, config, clipping ...), as the
    # recorder would write it now; the status does not enter any rule.
    return watch._meta("complete" if flush.final else "running")


def _has_nonfinite(tables: list[tuple[str, pa.Table]]) -> bool:
    """Does the flush hold a non-finite gradient or a skipped step? (checked at once)."""
    for kind, table in tables:
        if kind == "layers" and "nonfinite" in table.column_names:
            counts = table.column("nonfinite").to_numpy(zero_copy_only=False)
            if np.any(np.nan_to_num(counts, nan=0.0) > 0):
                return True
            if "grad_norm" in table.column_names:
                norms = table.column("grad_norm").to_numpy(zero_copy_only=False)
                if np.isinf(norms).any():
                    return True
        elif kind == "scalars" and "skipped" in table.column_names:
            skipped = table.column("skipped").to_numpy(zero_copy_only=False)
            if np.any(np.nan_to_num(skipped, nan=0.0) > 0):
                return True
    return False


def _is_rank0() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)


def _layers_text(f: Finding, most: int = 3) -> str:
    shown = list(f.shown_layers)
    if not shown:
        return "whole run"
    more = f" +{len(shown) - most} more" if len(shown) > most else ""
    return ", ".join(shown[:most]) + more


_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def finding_line(change: Change) -> str:
    """The one plain line printed for a new finding."""
    f = change.finding
    worse = " (worse)" if change.change == "worsened" else ""
    return (
        f"gradwatch: step {change.step}: {f.severity}{worse} {f.rule} "
        f"[{_layers_text(f)}]: {f.message}"
    )


def print_finding(change: Change) -> None:
    """One line on stderr: styled by rich in a terminal, plain text otherwise."""
    stream = sys.stderr
    if stream.isatty():
        from rich.console import Console
        from rich.markup import escape

        f = change.finding
        worse = " (worse)" if change.change == "worsened" else ""
        Console(file=stream, soft_wrap=True, highlight=False).print(
            f"[bold]gradwatch[/] step {change.step}: [{_STYLE[f.severity]}]{f.severity}{worse} "
            f"{f.rule}[/] [dim]\\[{escape(_layers_text(f))}][/]: {escape(f.message)}"
        )
    else:
        print(finding_line(change), file=stream, flush=True)
