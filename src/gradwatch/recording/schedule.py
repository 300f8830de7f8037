"""Which steps are recorded and sampled: a fixed spacing, or one kept under an overhead budget.

Without a budget (``overhead=None``) the spacing is fixed: every one of the first
``dense_steps`` steps is sampled, then every ``sample_every``-th; plain gradient statistics
every ``every``-th step.

With a budget (``overhead=0.03``, the default) the recorder measures its own cost while it
runs and spaces its sampled steps so that its share of the step time stays under the budget:

* **Cost**: the host time of the recorder's hooks and step work (``time.perf_counter``), and
  on accelerators the device time of its kernels (CUDA events, read only once they have
  completed: never a blocking sync), whichever is larger. A step's cost is everything charged
  from the end of the previous optimizer step to the end of this one; flushes are charged
  apart and spread over the steps. A sampled step also costs time in the user's own forward
  and backward (torch dispatching the hooks, a compiled model run eagerly while hooked):
  the recent sampled steps' median excess over the median unsampled step.
* **Step time**: the time between the ends of consecutive optimizer steps, less the
  recorder's cost in it (the user's own step). The share is ``cost / (step time + cost)``.
* **Spacing**: at each regular sampled step the next one is placed ``N`` steps later, the
  smallest multiple of ``sample_every`` (so ``sample_every`` is the densest spacing) whose
  expected share, from the recent measured costs (each kind's mean less its largest, so a
  cost that recurs counts and a one-off does not), fits the budget. Beyond
  ``diagnostic_spacing`` (100 steps at the defaults) the diagnosis would see too few sampled
  steps late in a run (a schedule or ``model.eval()`` that stops training at step 300 of
  1000 goes unseen at a spacing of 1000): so once at least ``_EVIDENCE`` steps past the dense
  start have been measured, the plain-step statistics are thinned first (every ``M``-th
  step, ``M`` a multiple of ``every``, at most ``_MAX_RECORD_SPACING``: a gradient that turns
  non-finite is seen within that many steps) if that keeps ``N`` at ``diagnostic_spacing``.
  Otherwise ``N`` grows, up to ``max_spacing``, and only when even that does not fit are the
  plain steps thinned. Both come back as soon as the costs allow. The plan is remade at each
  regular sampled step and every ``_REPLAN`` steps between them, so a wide sampled spacing
  does not freeze it (a narrower one brings the next sampled step forward). Sampled steps
  stay on multiples of ``sample_every``.
* **Never thinned**: the dense start (each of the first ``dense_steps`` steps), and the step
  after one whose gradient was not finite (it is always sampled).
* **A falling rate**: the step after a recorded one whose learning rate fell tenfold since
  the last such fall is sampled too, down to a millionth of the run's peak rate (so at most
  seven a descent): a schedule that takes the rate to nothing stops the weights between
  widely spaced sampled steps, and the diagnosis needs update ratios at the low rate to say
  what stopped them.
* **Flush window** (``flush_every=None``): doubled at a flush while flushes alone cost over a
  quarter of the budget (``flush_window``; under torch.distributed the longest any rank
  proposes).

The clock and the device timer are injectable, so the policy is tested with a fake clock.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

#: The default budget: the recorder's share of the step time.
DEFAULT_OVERHEAD = 0.03

# The sparsest spacing the budget may choose: 100 x sample_every, and at least 1000 steps,
# so that a run of thousands of steps still gets sampled steps.
_MAX_SPACING_FACTOR = 100
_MIN_MAX_SPACING = 1000
# The sparsest spacing the budget chooses before it thins the plain-step statistics: 10 x
# sample_every, and at least 100 steps. Measured on the real corpus (200-1000 steps, 2-core
# CPU): at a spacing of 1000 (what the budget chose for the small models there) a HF ResNet
# trained in eval mode (1000 steps) and a GPT-2 whose schedule decays the rate to nothing
# (600 steps) drew no finding; sampled every 100 with gradients every 2nd step, both were
# caught, and every healthy model stayed quiet with gradients every 4th step.
_DIAGNOSTIC_SPACING_FACTOR = 10
_MIN_DIAGNOSTIC_SPACING = 100
# Plain-step statistics are thinned only on this many measured steps past the dense start
# (their typical cost, the mean less the largest, moves on no single slow step), and the plan
# is remade every _REPLAN steps besides the regular sampled steps. It was 200 (on an H200,
# W2's 2.4 ms steps cost ~20% for those 200 steps, the measured share 17%), then 64: the real
# corpus' 200-step runs of 4-9 ms steps under the budget read 3.6-5.6%, 3.1-4.7% at 16, every
# finding the same (this project's 2-core CPU).
_EVIDENCE = 16
# Thinned plain-step statistics are still taken every this many steps at least: a gradient
# that turns non-finite is seen (and the next step sampled) within one default flush window.
# Recording one step in 100 costs 1% of what recording all of them does.
_MAX_RECORD_SPACING = 100
_REPLAN = 50
# A learning rate this many times below the one at the last fall samples the next step, while
# that one was above _RATE_FLOOR of the run's peak. Measured: HF GPT-2 under AdamW 1e-3 with
# StepLR(30, 0.1) stepped every batch (a schedule sized in epochs), 200 steps on this project's
# 2-core CPU: the budget spaced sampled steps every 20-30, and where the last ones fell at
# 140 and 170 the last block of update ratios read 3e-8 (median of 6e-8 and 1.4e-9), over
# unstable_updates' 1e-8, so the stop went unnamed (3 runs of 4); sampled after each tenfold
# fall (31, 61, ..., 181) it is named in every run. The diagnosis reads a rate as decayed at
# a thousandth of its peak; below a millionth more samples add nothing. Both our choices;
# 9.99, not 10: StepLR's gamma of 0.1 takes 0.1 to 0.010000000000000002, just short of a tenth.
_RATE_FALL = 9.99
_RATE_FLOOR = 1e-6

# Measurements kept per kind of step; their mean less the largest (``_Costs.typical``) lets
# one slow step (a page fault, the machine's other work, the first step's ordering pass) move
# nothing, and counts a cost that recurs. Medians did not: garbage collections or the device
# queue filling every few steps are part of the measured share, and a plan from medians kept
# it over the budget (a simulated 0.2 s spike every 7th step of 1 s: 5.5% against 3%; 3.3%
# now). Sampled steps are rare after the dense start, so fewer of them are kept: a change of
# cost shows within 5 of them.
_WINDOW = 64
_WINDOW_SAMPLED = 9
_PAUSE = 4.0
# A sampled step's time in the user's code is compared with at least this many unsampled ones.
_MIN_REFERENCE = 8

# The automatic flush window (``flush_every=None``): doubled at a flush while flushes alone
# cost more than a quarter of the budget, up to _MAX_WINDOW steps, _MAX_WINDOW_SECONDS of
# training (what a crash can lose, and how late a live finding can come) and
# _MAX_WINDOW_VALUES buffered values per metric (window x layers); halved when the step time
# grows past the seconds cap. A flush costs ~1.5-2 ms on a 5-layer MLP, most of it per flush
# (tables, the live check), not per step: 19 us a step of 0.3 ms at 100 steps a window, 6 at
# 1000 (this project's 2-core CPU; benchmark TINY: measured share 7.4% -> 5.0%).
_FLUSH_SHARE = 0.25
_MAX_WINDOW = 1600
_MAX_WINDOW_SECONDS = 5.0
_MAX_WINDOW_VALUES = 400_000

# Kinds of step, for the costs.
PLAIN, SAMPLED, IDLE = "plain", "sampled", "idle"


def check_overhead(value: Any) -> float | None:
    """``overhead`` for ``gw.watch``, checked: None (off) or a fraction in (0, 1)."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 < value < 1
    ):
        raise ValueError(
            f"Expected argument `overhead` to be a fraction of the step time in (0, 1), or "
            f"None, but got {value!r}. Pass e.g. `overhead=0.03` (recording may cost 3% of a "
            "step), or `overhead=None` for the fixed `every`/`sample_every` spacing."
        )
    return float(value)


class DeviceTimer(Protocol):
    """Times the recorder's kernels on an accelerator without blocking the host."""

    def start(self) -> None:
        """Open a section of the recorder's work in the device's stream."""

    def pause(self) -> None:
        """Close the open section (the user's kernels, e.g. the optimizer's, follow)."""

    def stop(self, kind: str, counted: bool) -> None:
        """Close the step: its sections' time belongs to a step of ``kind`` (``counted``: in
        the budgeted part of the run, after the dense start)."""

    def poll(self) -> list[tuple[str, bool, float]]:
        """``(kind, counted, seconds)`` of the steps whose sections all completed since the
        last poll."""


class CudaTimer:
    """Device time of the recorder's work from pairs of CUDA events, read when completed.

    A step has two sections, its statistics in the optimizer's step pre-hook and the update
    difference in its post-hook; the optimizer's own kernels between them are not counted.
    ``Event.query()`` never blocks: a step whose last event has not run yet stays pending
    until a later poll (at the next regular sampled step, or when the share is read at a
    flush). Events are reused once read.
    """

    def __init__(self) -> None:
        import torch

        self._event_type = torch.cuda.Event
        self._free: list[Any] = []
        self._open: list[Any] = []  # start, end, start, (end) ... of the step in progress
        self._pending: deque[tuple[str, bool, list[Any]]] = deque()

    def _record(self) -> None:
        event = self._free.pop() if self._free else self._event_type(enable_timing=True)
        event.record()
        self._open.append(event)

    def start(self) -> None:
        if len(self._open) % 2 == 0:
            self._record()

    def pause(self) -> None:
        if len(self._open) % 2 == 1:
            self._record()

    def stop(self, kind: str, counted: bool) -> None:
        self.pause()
        if self._open:
            self._pending.append((kind, counted, self._open))
            self._open = []

    def poll(self) -> list[tuple[str, bool, float]]:
        done: list[tuple[str, bool, float]] = []
        # Events complete in stream order: stop at the first step that has not.
        while self._pending and self._pending[0][2][-1].query():
            kind, counted, events = self._pending.popleft()
            ms = sum(a.elapsed_time(b) for a, b in zip(events[::2], events[1::2], strict=True))
            done.append((kind, counted, ms / 1000.0))
            self._free += events
        return done


@dataclass
class _Costs:
    """Recent costs per kind of step (seconds), and running totals for the measured share."""

    by_kind: dict[str, deque[float]] = field(
        default_factory=lambda: {
            PLAIN: deque(maxlen=_WINDOW),
            SAMPLED: deque(maxlen=_WINDOW_SAMPLED),
            IDLE: deque(maxlen=_WINDOW),
        }
    )
    total: float = 0.0  # recorder time in the budgeted part of the run

    def add(self, kind: str, seconds: float) -> None:
        self.by_kind[kind].append(seconds)

    def typical(self, kind: str) -> float | None:
        """The mean of the recent costs of ``kind`` less the largest: a cost that comes back
        (a garbage collection every few steps) counts, as the measured share counts it, and
        one slow step (a page fault, the first step's ordering pass) does not."""
        values = self.by_kind[kind]
        if len(values) < 3:
            return statistics.median(values) if values else None
        return (math.fsum(values) - max(values)) / (len(values) - 1)


class Schedule:
    """Decides which steps are recorded and sampled, and keeps the measured cost.

    Args:
        every: Plain-step statistics every ``every`` steps (the densest spacing for them).
        sample_every: The densest spacing of sampled steps after the dense start.
        dense_steps: Each of the first ``dense_steps`` steps is sampled.
        budget: The recorder's allowed share of the step time, or None for fixed spacing.
        clock: Seconds, monotonic (``time.perf_counter``; a fake one in tests).
        device_timer: Times the recorder's kernels on an accelerator, or None on CPU.
    """

    def __init__(
        self,
        *,
        every: int,
        sample_every: int,
        dense_steps: int,
        budget: float | None,
        clock: Callable[[], float] = time.perf_counter,
        device_timer: DeviceTimer | None = None,
    ) -> None:
        self.every = every
        self.sample_every = sample_every
        self.dense_steps = dense_steps
        self.budget = budget
        self.clock = clock
        self._device = device_timer if budget is not None else None
        self.max_spacing = _spacing(
            max(_MAX_SPACING_FACTOR * sample_every, _MIN_MAX_SPACING), sample_every
        )
        self.diagnostic_spacing = _spacing(
            max(_DIAGNOSTIC_SPACING_FACTOR * sample_every, _MIN_DIAGNOSTIC_SPACING), sample_every
        )
        #: Steps between two regular sampled steps, and between two plain recorded steps.
        self.sample_spacing = sample_every
        self.record_spacing = every
        # The first regular sampled step: the first multiple of sample_every after the start.
        self._next_sample = _spacing(dense_steps, sample_every) if dense_steps else 0
        self._last_regular: int | None = None  # the last regular sampled step
        self._current = -1  # the step begun last
        self._forced: int | None = None  # the step after a non-finite gradient or a fall
        self._rate_peak = 0.0  # the largest learning rate seen (recorded steps)
        self._rate_fell = 0.0  # the rate at the last tenfold fall (the peak before one)
        self._host = _Costs()
        self._dev = _Costs()
        self._charged = 0.0  # host time charged since the last step ended
        self._flushed = 0.0  # flush time since the last step ended (not the user's)
        self._flush = [0.0, 0.0]  # host time of flushes: in all, in the budgeted part
        self._last_flush: float | None = None  # host time of the last flush
        self._kind = IDLE  # of the step in progress
        self._counted = False  # the step in progress is after the dense start
        self._last_end: float | None = None
        self._user: deque[float] = deque(maxlen=_WINDOW)  # the user's own step times
        self._other: deque[float] = deque(maxlen=_WINDOW)  # those of counted unsampled steps
        self._excess: deque[float] = deque(maxlen=_WINDOW_SAMPLED)  # sampled steps' over them
        self._charged_indirect: float | None = None  # at the last counted sampled step
        self._steps = 0  # steps whose accounting was closed
        self._typical = math.inf  # the median user step time, refreshed every 16 steps
        self._wall = 0.0  # wall time of the budgeted steps (for the measured share)
        self._steps_measured = 0
        self._timed: DeviceTimer | None = None  # the device timer of the step in progress
        #: Under torch.distributed the ranks must sample and record the same steps (their
        #: statistics add up at each flush): the spacings then change only at a flush, to
        #: the widest any rank proposes (``proposal``/``adopt``), and a non-finite gradient
        #: forces the next sample only where every rank sees it (``force_on_nonfinite``).
        self.distributed = False
        self.force_on_nonfinite = True

    @classmethod
    def for_device(
        cls, device: Any, every: int, sample_every: int, dense_steps: int, budget: float | None
    ) -> Schedule:
        """The schedule of a recorder on ``device`` (timed with CUDA events on a GPU)."""
        import torch

        gpu = budget is not None and device.type == "cuda" and torch.cuda.is_available()
        return cls(
            every=every,
            sample_every=sample_every,
            dense_steps=dense_steps,
            budget=budget,
            device_timer=CudaTimer() if gpu else None,
        )

    # ------------------------------------------------------------------ which steps
    def sampled(self, step: int) -> bool:
        """Whether ``step`` is a sampled step (activations, update ratios, ...)."""
        if step < self.dense_steps:
            return True
        if self.budget is None:
            return step % self.sample_every == 0
        # (>=: a step the recorder did not see cannot leave the schedule behind for good.)
        return step >= self._next_sample or step == self._forced

    def recorded(self, step: int) -> bool:
        """Whether ``step`` records its gradient statistics (every sampled step does)."""
        return self.sampled(step) or step % self.record_spacing == 0

    def regular(self, step: int) -> bool:
        """Whether ``step`` is on the regular spacing, not sampled for the dense start."""
        return step >= self.dense_steps or step % self.sample_every == 0

    def begin(self, step: int) -> tuple[bool, bool]:
        """``(recorded, sampled)`` for the step whose statistics are taken now.

        A regular sampled step places the next one, from the costs measured so far.
        """
        self._current = step
        sampled = self.sampled(step)
        recorded = sampled or step % self.record_spacing == 0
        self._kind = SAMPLED if sampled else PLAIN if recorded else IDLE
        self._counted = step >= self.dense_steps
        if self.budget is not None and sampled and step >= self._next_sample:
            if not self.distributed:
                self._plan()
            self._next_sample = step + self.sample_spacing
            self._last_regular = step
        elif (
            self.budget is not None
            and not self.distributed
            and step >= self.dense_steps
            and step % _REPLAN == 0
        ):
            self._plan()
            self._bring_forward(step)
        # A step that records nothing launches no kernel: its host time is its cost, and
        # four event records would be most of it on a short GPU step.
        self._timed = self._device if self._kind != IDLE else None
        if self._timed is not None:
            self._timed.start()
        return recorded, sampled

    def pause(self) -> None:
        """The recorder's work in the optimizer's step pre-hook is done (device timing)."""
        if self._timed is not None:
            self._timed.pause()

    def resume(self) -> None:
        """The recorder's work in the optimizer's step post-hook begins (device timing)."""
        if self._timed is not None:
            self._timed.start()

    def nonfinite(self, step: int) -> None:
        """``step``'s gradient was not finite: sample the next step whatever the spacing."""
        if self.budget is not None and self.force_on_nonfinite:
            self._forced = step + 1

    def learning_rate(self, step: int, lr: object) -> None:
        """``step`` (a recorded step) used the learning rate ``lr``: after a tenfold fall
        since the last one, sample the next step whatever the spacing. A rate held in a
        device tensor is not compared (reading it would sync)."""
        if self.budget is None or type(lr) is not float:
            return
        if lr > self._rate_peak:
            self._rate_peak = self._rate_fell = lr
        elif lr * _RATE_FALL <= self._rate_fell and self._rate_fell > _RATE_FLOOR * self._rate_peak:
            self._rate_fell = lr
            self._forced = step + 1

    def proposal(self) -> tuple[int, int]:
        """``(sample_spacing, record_spacing)`` the measured costs call for now, without
        adopting them (under torch.distributed every rank proposes at a flush)."""
        kept = self.sample_spacing, self.record_spacing
        self._plan()
        proposed = self.sample_spacing, self.record_spacing
        self.sample_spacing, self.record_spacing = kept
        return proposed

    def adopt(self, sample_spacing: float, record_spacing: float) -> None:
        """Use the spacings the ranks agreed on (the widest proposed) from now on."""
        self.sample_spacing = _spacing(sample_spacing, self.sample_every)
        self.record_spacing = _spacing(record_spacing, self.every)
        self._bring_forward(self._current)

    def _bring_forward(self, step: int) -> None:
        """After a new plan at ``step``: a spacing narrower than the one the next sampled step
        was placed with brings it forward, to the last regular one plus the new spacing, and
        not before the next multiple of ``sample_every`` after ``step`` (a plan made while
        the spacing was 1000 must not leave the next sampled step 900 steps away)."""
        if self._last_regular is None:
            return
        due = max(self._last_regular + self.sample_spacing, _spacing(step + 1, self.sample_every))
        self._next_sample = min(self._next_sample, due)

    # ------------------------------------------------------------------ cost
    def charge(self, seconds: float) -> None:
        """Add host time the recorder spent (its hooks, its step work)."""
        self._charged += seconds

    def charge_flush(self, seconds: float) -> None:
        """Add the host time of a flush (spread over all steps)."""
        self._flush[0] += seconds
        self._flushed += seconds
        self._last_flush = seconds
        if self._counted:
            self._flush[1] += seconds

    def flush_window(self, window: int, base: int, n_layers: int) -> int:
        """The steps of the next flush window, when the recorder chooses it.

        ``window`` is the current one and ``base`` the first (and smallest). Doubled while the
        last flush, spread over its window, costs more than a quarter of the budget, within
        the caps above; halved (to ``base`` at least) when the window's steps take longer
        than ``_MAX_WINDOW_SECONDS``. Unchanged without a budget and before a step time is
        known. Under torch.distributed each rank proposes it at a flush and every rank takes
        the longest proposed (every rank must flush at the same step).
        """
        if self.budget is None or self._last_flush is None or not self._user:
            return window
        step = statistics.median(self._user)
        while window > base and window * step > _MAX_WINDOW_SECONDS:
            window //= 2
        grown = 2 * window
        over = self._last_flush / window > _FLUSH_SHARE * self.budget * step
        fits = (
            grown * step <= _MAX_WINDOW_SECONDS and grown * max(n_layers, 1) <= _MAX_WINDOW_VALUES
        )
        return grown if over and fits and grown <= _MAX_WINDOW else window

    def end(self) -> None:
        """The optimizer step begun last is over: close its accounting."""
        now = self.clock()
        cost, self._charged = self._charged, 0.0
        flushed, self._flushed = self._flushed, 0.0
        if self._timed is not None:
            self._timed.stop(self._kind, self._counted)
        self._timed = None
        if self._last_end is not None:
            user = max(now - self._last_end - cost - flushed, 0.0)
            if self._counted:
                indirect = self._indirect(user, cost)
                cost, user = cost + indirect, user - indirect
            self._user.append(user)
            self._host.add(self._kind, cost)
            if self._steps % 16 == 0:  # (a median of 64 values takes a few microseconds)
                self._typical = statistics.median(self._user)
            if self._counted:
                # A pause between steps (an evaluation, a checkpoint) is not step time: the
                # share is of training steps, so a step counts at most _PAUSE typical ones.
                self._wall += min(user, _PAUSE * self._typical) + cost + flushed
                self._host.total += cost
                self._steps_measured += 1
        self._steps += 1
        self._last_end = now
        # This accounting is the recorder's work too (~2-3 us a step on CPU, half of what an
        # idle step was measured to cost without it): charged to the next step.
        self._charged += self.clock() - now

    def _indirect(self, user: float, cost: float) -> float:
        """The recorder's part of a counted step's ``user`` seconds: for a sampled step, the
        recent sampled steps' median excess over the median unsampled step (a pause on one
        moves nothing; a step of over _PAUSE typical ones is left out), between 0 and the
        step's own ``cost`` (user work that recurs on the sampled steps' multiples, a log
        every 10 steps, can at worst halve their rate); 0 for the others, the reference."""
        if self._kind != SAMPLED:
            self._other.append(user)
            return 0.0
        if len(self._other) >= _MIN_REFERENCE:
            typical = statistics.median(self._other)
            if user <= _PAUSE * typical:
                self._excess.append(user - typical)
        excess = statistics.median(self._excess) if self._excess else 0.0
        self._charged_indirect = min(max(excess, 0.0), user, cost)
        return self._charged_indirect

    def _poll_device(self) -> None:
        if self._device is None:
            return
        for kind, counted, seconds in self._device.poll():
            self._dev.add(kind, seconds)
            if counted:
                self._dev.total += seconds

    def _cost(self, kind: str) -> float | None:
        host, dev = self._host.typical(kind), self._dev.typical(kind)
        if host is None or dev is None:
            return host if dev is None else dev
        return max(host, dev)

    def _plan(self) -> None:
        """Choose the next sampled spacing (and the plain one) from the measured costs.

        Per step the recorder costs ``fixed + plain / M + sampled / N``: ``fixed`` the flushes
        spread over the steps and what a step that records nothing costs (the optimizer
        hooks' Python), ``plain`` what recording a plain step adds to that and ``sampled``
        what a sampled step adds to a plain one. That must stay within ``allowed``, the time
        for which ``cost / (step time + cost)`` equals the budget. In order of preference:
        ``N`` up to ``diagnostic_spacing`` with ``M = every``; ``N`` at it with ``M`` up to
        ``_MAX_RECORD_SPACING``; ``N`` up to ``max_spacing`` with ``M = every``; ``N`` at
        it with ``M`` as wide as needed (thinning waits for ``_EVIDENCE`` measured steps).
        """
        self._poll_device()
        sampled, plain = self._cost(SAMPLED), self._cost(PLAIN)
        if self.budget is None or sampled is None or plain is None or len(self._user) < 2:
            return  # nothing to go by yet (no plain step measured): keep the spacing
        allowed = self.budget * statistics.median(self._user) / (1.0 - self.budget)
        idle = self._cost(IDLE) or 0.0
        fixed = self._flush[0] / max(self._steps, 1) + idle
        plain_extra = max(plain - idle, 0.0)
        sampled_extra = max(sampled - idle - plain_extra, 0.0)

        def plain_spacing(sample_spacing: int) -> float:
            # The plain spacing that fits beside sampled steps every ``sample_spacing`` steps.
            left = allowed - fixed - sampled_extra / sample_spacing
            return math.inf if left <= 0 else plain_extra / left

        left = allowed - fixed - plain_extra / self.every
        need = math.inf if left <= 0 else sampled_extra / left
        self.record_spacing = self.every
        top = _spacing(_MAX_RECORD_SPACING, self.every)
        thin = self._steps_measured >= _EVIDENCE  # enough steps measured to thin plain ones
        if need <= self.diagnostic_spacing:
            self.sample_spacing = _spacing(need, self.sample_every)
        elif thin and plain_spacing(self.diagnostic_spacing) <= top:
            # Sampled steps the diagnosis can use late in the run, paid for by thinning the
            # plain steps' gradient statistics.
            self.sample_spacing = self.diagnostic_spacing
            self.record_spacing = _spacing(plain_spacing(self.diagnostic_spacing), self.every)
        elif need <= self.max_spacing:
            self.sample_spacing = _spacing(need, self.sample_every)
        else:
            self.sample_spacing = self.max_spacing
            if thin:
                # Over the budget even at the sparsest sampled spacing: the plain steps are
                # what is left to thin.
                need = plain_spacing(self.max_spacing)
                self.record_spacing = _spacing(min(need, top), self.every)  # (need may be inf)

    # ------------------------------------------------------------------ report
    def share(self) -> float | None:
        """The measured share of the step time after the dense start (None before)."""
        self._poll_device()
        if self._wall <= 0:
            return None
        return (max(self._host.total, self._dev.total) + self._flush[1]) / self._wall

    def meta(self) -> dict[str, Any]:
        """What the trace's config keeps of the schedule (its state at the last write)."""
        share = self.share()

        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(1000.0 * seconds, 4)

        return {
            "sample_spacing": self.sample_spacing,
            "record_spacing": self.record_spacing,
            "measured_share": None if share is None else round(share, 5),
            "steps_measured": self._steps_measured,
            # What the share is made of: the recent typical cost of a step of each kind, the
            # flushes spread over the steps, and the user's own median step.
            "cost_ms": {
                IDLE: ms(self._cost(IDLE)),
                PLAIN: ms(self._cost(PLAIN)),
                SAMPLED: ms(self._cost(SAMPLED)),
                "sampled_indirect": ms(self._charged_indirect),  # (of it, in the model's step)
                "flush_per_step": ms(self._flush[0] / max(self._steps, 1)),
                "user_step": ms(statistics.median(self._user) if self._user else None),
            },
        }


def _spacing(steps: float, unit: int) -> int:
    """The smallest multiple of ``unit`` (at least ``unit``) that is at least ``steps``."""
    return max(unit, unit * math.ceil(steps / unit))
