"""What the framework callbacks share: their options, the watch they open and close, and
the end-of-run findings."""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable
from typing import Any

import torch

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


def scalar_loss(value: Any) -> torch.Tensor | None:
    """``value`` as a detached 0-d tensor when it is a one-element tensor (a loss), else None."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.detach().reshape(())
    return None


class LossPool:
    """The losses of the forwards since the last optimizer step, pooled into that step's loss.

    Kept on the device (no host sync). Adding is thread-safe and moves a loss to the first
    one's device: ``nn.DataParallel`` runs its replicas' forwards in threads, one per device.
    """

    def __init__(self) -> None:
        self._sum: torch.Tensor | None = None
        self._count = 0
        self._lock = threading.Lock()

    def add(self, loss: torch.Tensor) -> None:
        with self._lock:
            total = self._sum
            self._sum = loss if total is None else total + loss.to(total.device)
            self._count += 1

    def take(self, *, summed: bool = False) -> torch.Tensor | None:
        """The pooled loss, the mean (or with ``summed`` the sum) of those added since the
        last take; None when none was. The pool starts empty again."""
        with self._lock:
            total, count = self._sum, self._count
            self._sum, self._count = None, 0
        if total is None or summed:
            return total
        return total / count


class WatchingCallback:
    """The part of a framework callback that does not depend on the framework: its options,
    and the one watch it opens when training starts and closes when training ends or fails.

    Subclasses turn the framework's hooks into :meth:`_start`, :meth:`_recording`,
    :meth:`_close` and :meth:`_finish`.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str] | None = None,
        *,
        report: bool = True,
        **watch_options: Any,
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.report = report
        self.watch_options = check_watch_options(type(self).__name__, watch_options)
        self.watch: Watch | None = None
        self._open = False
        self._steps_seen = 0  # the watch's steps at the last _stepped()

    def _start(
        self,
        model: Any,
        optimizer: Any,
        run_dir: str | os.PathLike[str],
        *,
        framework: str,
        global_step: int,
        scaler: Any = None,
        **extra: Any,
    ) -> Watch:
        """Open the watch; watch step 0 is the trainer's ``global_step`` (a resumed run
        starts past 0), kept in the run's metadata beside the user's own. ``scaler`` is the
        framework's GradScaler, if any, passed on unless the user passed their own."""
        options = dict(self.watch_options)
        if scaler is not None:
            options.setdefault("scaler", scaler)
        meta = {"trainer": {"framework": framework, "global_step_at_start": global_step}}
        options["meta"] = {**meta, **(options.get("meta") or {})}
        self.watch = watch(model, optimizer, run_dir, **extra, **options)
        self._open = True
        self._steps_seen = 0
        return self.watch

    def _stepped(self, w: Watch) -> bool:
        """Whether the watch recorded an optimizer step since the last call (a step a
        GradScaler skipped, or a micro-batch of an accumulation, records none)."""
        stepped = w.num_steps > self._steps_seen
        self._steps_seen = w.num_steps
        return stepped

    def _recording(self) -> Watch | None:
        """The watch while it records, else None."""
        return self.watch if self._open else None

    def _close(self, exc: BaseException | None = None) -> Watch | None:
        """Close the open watch, the run marked failed when ``exc`` is given; the watch
        closed, or None when none was open (so calling it again is safe)."""
        w = self._recording()
        if w is None:
            return None
        self._open = False
        if exc is None:
            w.close()
        else:
            w.__exit__(type(exc), exc, exc.__traceback__)
        return w

    def _finish(self, is_rank0: bool, warn: Callable[[str], object]) -> None:
        """Close the watch at the end of training and ``warn`` about critical findings."""
        w = self._close()
        if w is not None and self.report and is_rank0:
            for finding in critical_findings(w):
                warn(describe(finding))
