"""The overhead budget spaces sampled steps from measured costs: tested with a fake clock."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.recording.schedule import Schedule, check_overhead


@dataclass
class FakeClock:
    """A clock that moves only when told to."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Costs:
    """Seconds per step: the user's own work, and what the recorder costs per kind of step."""

    user: float = 1.0
    idle: float = 0.0
    plain: float = 0.01
    sampled: float = 0.5
    #: What a sampled step adds to the user's own forward and backward, uncharged (hooks
    #: dispatched by torch; a compiled model run eagerly), after the dense start.
    indirect: float = 0.0


@dataclass
class Run:
    """A simulated training run: which steps were recorded and sampled, and the time spent."""

    sampled: list[int] = field(default_factory=list)
    recorded: list[int] = field(default_factory=list)
    cost: float = 0.0
    wall: float = 0.0


def simulate(
    schedule: Schedule,
    clock: FakeClock,
    steps: range,
    costs: Costs,
    run: Run | None = None,
    *,
    spike: tuple[float, int] = (0.0, 1),
    rate: Any = None,
    pause: Any = None,
) -> Run:
    """Drive ``schedule`` as the recorder does, the fake clock advancing by ``costs``.

    ``spike``: (seconds, period): every period-th step costs that much more, whatever it
    records (a garbage collection in a hook, the device queue filling up). ``rate``: the
    learning rate of each step (a function of it), read at the recorded ones. ``pause``: the
    seconds the user's code pauses before each step (a function of it: an evaluation).
    """
    run = run or Run()
    for step in steps:
        start = clock.now
        counted = step >= schedule.dense_steps
        indirect = costs.indirect if counted and schedule.sampled(step) else 0.0
        clock.now += (pause(step) if pause else 0.0) + costs.user + indirect  # forward, backward
        recorded, sampled = schedule.begin(step)
        if recorded and rate is not None:
            schedule.learning_rate(step, rate(step))
        cost = costs.sampled if sampled else costs.plain if recorded else costs.idle
        cost += spike[0] if step % spike[1] == 0 else 0.0
        clock.now += cost
        schedule.charge(cost)
        schedule.end()
        if sampled:
            run.sampled.append(step)
        if recorded:
            run.recorded.append(step)
        if counted:
            run.cost += cost + indirect
            run.wall += clock.now - start
    return run


def make(budget: float | None = 0.03, **kwargs: int) -> tuple[Schedule, FakeClock]:
    clock = FakeClock()
    options = {"every": 1, "sample_every": 10, "dense_steps": 20, **kwargs}
    return Schedule(budget=budget, clock=clock, **options), clock


def test_share_above_budget_spaces_sampled_steps_out_until_it_fits() -> None:
    """A sampled step costing half a step under a 3% budget: sampled every 30 steps, in budget."""
    schedule, clock = make()
    run = simulate(schedule, clock, range(3000), Costs())
    # extra of a sampled step 0.49 s; per step left after plain recording 0.0309 - 0.01 s.
    assert schedule.sample_spacing == 30
    later = [s for s in run.sampled if s >= 100]
    assert all(b - a == 30 for a, b in itertools.pairwise(later))
    assert all(s % 10 == 0 for s in run.sampled if s >= 20)  # on multiples of sample_every
    assert run.recorded == list(range(3000))  # plain statistics are not thinned
    assert run.cost / run.wall <= 0.03
    assert schedule.share() == pytest.approx(run.cost / run.wall)


def test_time_a_sampled_step_adds_to_the_users_own_step_is_charged() -> None:
    """Hooks make the model's own forward and backward slower on a sampled step: measured
    against the unsampled steps and charged, as if the recorder had spent it (0.3 s + 0.2 s
    spaces the steps as 0.5 s does); without it the spacing was 20 and the share 3.4% (2.4% measured)."""
    schedule, clock = make()
    run = simulate(schedule, clock, range(3000), Costs(sampled=0.3, indirect=0.2))
    assert schedule.sample_spacing == 30
    assert run.cost / run.wall <= 0.03
    # (the first sampled steps after the dense start have no unsampled ones to compare with)
    assert schedule.share() == pytest.approx(run.cost / run.wall, rel=0.01)
    cost = schedule.meta()["cost_ms"]
    assert cost["sampled_indirect"] == pytest.approx(200.0)
    assert cost["sampled"] == pytest.approx(500.0)
    assert cost["user_step"] == pytest.approx(1000.0)


@pytest.mark.parametrize(
    ("indirect", "charged"),
    [(-0.2, 0.0), (1.0, 300.0)],
    ids=["faster-own-step-not-credited", "at-most-the-steps-own-cost"],
)
def test_indirect_time_is_charged_within_zero_and_the_steps_own_cost(
    indirect: float, charged: float
) -> None:
    """A sampled step whose own step ran faster gains no credit; one that seems to add more
    than its own cost is charged that cost (user work that recurs on its multiples)."""
    schedule, clock = make()
    simulate(schedule, clock, range(2000), Costs(sampled=0.3, indirect=indirect))
    assert schedule.meta()["cost_ms"]["sampled_indirect"] == pytest.approx(charged)


def test_a_pause_before_some_sampled_steps_is_not_charged_to_them() -> None:
    """An evaluation that falls before every fourth sampled step (3 s, every 120 steps) moves
    nothing: the median over the recent sampled steps leaves it out."""
    schedule, clock = make()
    pause = lambda step: 3.0 if step % 120 == 90 else 0.0  # noqa: E731
    run = simulate(schedule, clock, range(3000), Costs(), pause=pause)
    assert [s for s in run.sampled if s >= 2000][:5] == [2010, 2040, 2070, 2100, 2130]
    assert schedule.sample_spacing == 30
    assert schedule.meta()["cost_ms"]["sampled_indirect"] == 0.0


def test_a_pause_before_every_sampled_step_is_not_charged_to_them() -> None:
    """A pause before every step on a multiple of 10 (a benchmark rotating copies in blocks
    of 10 steps: the other copies' blocks come between; an evaluation every 10 steps) falls
    on every sampled step: over _PAUSE typical steps it is a pause, not what hooks cost."""
    schedule, clock = make()
    pause = lambda step: 40.0 if step % 10 == 0 else 0.0  # noqa: E731
    simulate(schedule, clock, range(3000), Costs(sampled=0.3, indirect=0.2), pause=pause)
    assert schedule.meta()["cost_ms"]["sampled_indirect"] == 0.0


def test_share_below_budget_shrinks_back_to_sample_every() -> None:
    """When sampled steps become cheap, the spacing comes back to sample_every."""
    schedule, clock = make()
    run = simulate(schedule, clock, range(1000), Costs())
    assert schedule.sample_spacing == 30
    simulate(schedule, clock, range(1000, 1400), Costs(sampled=0.02), run)
    assert schedule.sample_spacing == 10
    assert [s for s in run.sampled if s >= 1300] == list(range(1300, 1400, 10))


def test_cheap_recording_keeps_the_fixed_spacing() -> None:
    """Within budget the sampled steps are exactly those of the fixed spacing."""
    fixed, clock_f = make(budget=None)
    budgeted, clock_b = make()
    cheap = Costs(plain=0.001, sampled=0.02)
    a = simulate(fixed, clock_f, range(500), cheap)
    b = simulate(budgeted, clock_b, range(500), cheap)
    assert a.sampled == b.sampled == [*range(20), *range(20, 500, 10)]


def test_dense_start_is_never_thinned() -> None:
    """Even at 10x the step time per sampled step, each of the first dense_steps is sampled."""
    schedule, clock = make(dense_steps=50)
    run = simulate(schedule, clock, range(200), Costs(sampled=10.0))
    assert run.sampled[:50] == list(range(50))
    assert 50 in run.sampled  # the first regular one, planned from the dense start's costs


def test_nonfinite_gradient_samples_the_next_step() -> None:
    """The step after a non-finite gradient is sampled although the spacing is wide."""
    schedule, clock = make()
    simulate(schedule, clock, range(300), Costs(sampled=5.0))
    assert schedule.sample_spacing >= 100
    assert not schedule.sampled(301)
    schedule.nonfinite(300)
    assert schedule.sampled(301)
    run = simulate(schedule, clock, range(300, 310), Costs(sampled=5.0))
    assert 301 in run.sampled and 302 not in run.sampled


def test_a_tenfold_fall_of_the_rate_samples_the_next_step() -> None:
    """A step schedule dividing the rate by 10 every 30 steps (one sized in epochs, stepped
    every batch): the step after each fall is sampled, off a spacing of 100, until the rate
    is under a millionth of its peak."""
    schedule, clock = make(every=2)
    run = simulate(
        schedule, clock, range(600), Costs(sampled=5.0), rate=lambda s: 1e-3 * 0.05 ** (s // 30)
    )
    assert schedule.sample_spacing >= 100
    # Recorded every 2nd step: the falls at 30, 60, ... are seen there; the one at 150 (to
    # 3e-7 of the peak) is the last from a rate above a millionth of it.
    assert [s for s in run.sampled if s >= 20 and s % 10] == [31, 61, 91, 121, 151]


def test_falls_that_come_back_or_creep_sample_a_bounded_number_of_steps() -> None:
    """A rate that swings between its peak and a hundredth of it every step samples once; one
    that falls 1% a step all the way to zero samples at most seven steps past a fall; a new
    peak (a restart above the old one) starts over."""
    swinging, clock = make(dense_steps=0)
    run = simulate(
        swinging, clock, range(400), Costs(sampled=5.0), rate=lambda s: 1.0 if s % 2 else 0.01
    )
    assert [s for s in run.sampled if s % 10] == [3]  # 0.01 at step 2, after the peak at 1
    creeping, clock = make()
    run = simulate(creeping, clock, range(3000), Costs(sampled=5.0), rate=lambda s: 0.99**s)
    forced = [s for s in run.sampled if s >= 20 and s % 10]
    # 0.99**230 <= 0.1 < 0.99**229 samples step 231; 0.99**460 is a tenth of that, ...; the
    # rate at the sixth fall, 0.99**1380 (9.5e-7), is under a millionth of the peak.
    assert forced == [231, 461, 691, 921, 1151, 1381]
    run = simulate(creeping, clock, range(3000, 3300), Costs(sampled=5.0), rate=lambda s: 2.0)
    run = simulate(
        creeping, clock, range(3300, 3600), Costs(sampled=5.0), rate=lambda s: 0.1, run=run
    )
    assert 3301 in run.sampled


def test_a_falling_rate_moves_nothing_without_a_budget_or_on_the_device() -> None:
    """The fixed spacing stays fixed, and a rate held in a device tensor is not read."""
    fixed, clock = make(budget=None)
    run = simulate(fixed, clock, range(300), Costs(), rate=lambda s: 0.1 ** (s // 30))
    assert run.sampled == [*range(20), *range(20, 300, 10)]
    budgeted, clock = make()
    on_device = torch.tensor(1.0, device="meta")
    simulate(budgeted, clock, range(100), Costs(sampled=5.0), rate=lambda s: on_device)
    assert not budgeted.sampled(101)


def test_plain_steps_are_thinned_once_enough_steps_show_them_over_budget() -> None:
    """Plain statistics over budget by themselves: every step is recorded until 16 steps past
    the dense start were measured (the plan at step 50), then they are thinned to fit beside
    sampled steps at the diagnostic spacing (100 steps), and the next sampled step, placed
    1000 steps away before, comes forward; back when costs fall."""
    from gradwatch.recording.schedule import _EVIDENCE

    schedule, clock = make()
    costs = Costs(plain=0.1, sampled=0.2)  # plain recording alone is 10% of a step
    run = simulate(schedule, clock, range(50), costs)
    assert run.recorded == list(range(50))  # not yet: too few steps measured
    assert schedule.sample_spacing == schedule.max_spacing == 1000  # planned at step 30
    assert 20 + _EVIDENCE <= 50 < 20 + _EVIDENCE + 50  # the first plan with enough evidence
    simulate(schedule, clock, range(50, 3030), costs, run)
    assert 51 not in run.recorded
    assert schedule.sample_spacing == schedule.diagnostic_spacing == 100
    # extra of a sampled step 0.1 s, at 1/100: 0.0309 - 0.001 s left for 0.1 s of plain.
    assert schedule.record_spacing == 4
    assert [s for s in run.sampled if 30 <= s < 400] == [30, 130, 230, 330]  # 1030 came forward
    late = [s for s in run.recorded if s >= 300]
    assert late and all(s % 4 == 0 or s in run.sampled for s in late)
    assert 303 not in run.recorded
    tail = Run()
    simulate(schedule, clock, range(3030, 5030), costs, tail)
    assert tail.cost / tail.wall <= 0.03  # thinned, it is within the budget
    # The costs fall: at the next plan (every 50 steps) plain statistics come back.
    simulate(schedule, clock, range(5030, 5300), Costs(plain=0.001, sampled=0.02), run)
    assert schedule.record_spacing == 1


def test_plain_steps_are_not_thinned_for_sampled_steps_no_thinning_could_pay_for() -> None:
    """A sampled step costing 5 steps cannot be every 100th within 3% whatever the plain steps
    cost (5/100 > 0.03): the sampled spacing grows instead, and the cheap plain statistics
    stay on every step."""
    schedule, clock = make()
    run = simulate(schedule, clock, range(3000), Costs(plain=0.01, sampled=5.0))
    # extra 4.99 s; per step left after plain recording 0.0309 - 0.01 s: 239 -> 240.
    assert schedule.sample_spacing == 240 and schedule.record_spacing == 1
    assert run.recorded == list(range(3000))


def test_fixed_spacing_without_a_budget() -> None:
    """overhead=None: every sample_every-th step after the dense start, whatever it costs."""
    schedule, clock = make(budget=None, dense_steps=3, sample_every=5)
    run = simulate(schedule, clock, range(40), Costs(sampled=100.0))
    assert run.sampled == [0, 1, 2, 5, 10, 15, 20, 25, 30, 35]
    schedule.nonfinite(40)
    assert not schedule.sampled(41)


def test_a_pause_between_steps_does_not_dilute_the_share() -> None:
    """An evaluation of 1000 steps' time between two steps barely moves the measured share."""
    schedule, clock = make()
    simulate(schedule, clock, range(500), Costs())
    before = schedule.share()
    clock.now += 1000.0
    simulate(schedule, clock, range(500, 510), Costs())
    after = schedule.share()
    assert before is not None and after == pytest.approx(before, rel=0.05)
    assert schedule.sample_spacing == 30  # the plan goes by the steps' costs: unmoved


@pytest.mark.parametrize(("spike", "period"), [(0.1, 10), (0.2, 7), (0.5, 20)])
def test_a_cost_that_recurs_every_few_steps_is_kept_within_the_budget(
    spike: float, period: int
) -> None:
    """Spikes that a median of the recent costs would leave out (a median of 64 steps ignores
    one in 7) are paid for by spacing the rest out: the measured share stays within the
    budget's +0.01 (5.5% with a plan from medians, for 0.2 s every 7th step)."""
    schedule, clock = make()
    costs = Costs(idle=0.005, plain=0.02)
    run = simulate(schedule, clock, range(20000), costs, spike=(spike, period))
    assert run.cost / run.wall <= 0.03 + 0.01
    assert schedule.share() == pytest.approx(run.cost / run.wall)


def test_one_slow_sampled_step_moves_nothing() -> None:
    """A single sampled step 100x slower than the others (a first compile, a page fault) is
    left out of the plan: the spacing is the one the other steps call for."""
    schedule, clock = make()
    simulate(schedule, clock, range(1000), Costs())
    assert schedule.sample_spacing == 30
    step = next(s for s in range(1000, 1100) if schedule.sampled(s))
    simulate(schedule, clock, range(1000, step), Costs())
    simulate(schedule, clock, range(step, step + 1), Costs(sampled=50.0))
    simulate(schedule, clock, range(step + 1, step + 200), Costs())
    assert schedule.sample_spacing == 30


def test_device_time_counts_when_larger_than_host_time() -> None:
    """On an accelerator the kernels' time, read without blocking, sets the cost."""

    class FakeDevice:
        def __init__(self) -> None:
            self.done: list[tuple[str, bool, float]] = []
            self.open = False

        def start(self) -> None:
            self.open = True

        def pause(self) -> None:
            self.open = False

        def stop(self, kind: str, counted: bool) -> None:
            self.done.append((kind, counted, 0.5 if kind == "sampled" else 0.01))

        def poll(self) -> list[tuple[str, bool, float]]:
            done, self.done = self.done, []
            return done

    clock = FakeClock()
    schedule = Schedule(
        every=1,
        sample_every=10,
        dense_steps=20,
        budget=0.03,
        clock=clock,
        device_timer=FakeDevice(),
    )
    simulate(schedule, clock, range(2000), Costs(plain=0.0, sampled=0.0))
    assert schedule.sample_spacing == 30
    share = schedule.share()
    assert share is not None and share < 0.03


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, math.nan, True, "3%"])
def test_bad_overhead_is_refused_with_the_argument_named(bad: object) -> None:
    """overhead outside (0, 1), non-finite, boolean or a string: a ValueError naming it."""
    with pytest.raises(ValueError, match="overhead"):
        check_overhead(bad)
    with pytest.raises(ValueError, match="overhead"):
        gw.watch(nn.Linear(2, 2), overhead=bad)  # type: ignore[arg-type]


def _train(
    steps: int,
    nan_at: int | None = None,
    *,
    lr: float = 0.01,
    decay_every: int | None = None,
    **kwargs: object,
) -> gw.Trace:
    """A small tanh MLP under SGD at ``lr``, a NaN gradient at step ``nan_at``, the rate
    cut tenfold every ``decay_every`` steps (StepLR stepped every batch)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    decay = None
    if decay_every is not None:
        decay = torch.optim.lr_scheduler.StepLR(opt, step_size=decay_every, gamma=0.1)
    with gw.watch(model, opt, **kwargs) as w:  # type: ignore[arg-type]
        for step in range(steps):
            opt.zero_grad()
            model(torch.randn(8, 4)).pow(2).mean().backward()
            if step == nan_at:
                # The last layer's bias: the first layer's activations stay finite after it.
                model[2].bias.grad[0] = math.nan
            opt.step()
            if decay is not None:
                decay.step()
    return w.trace


def test_watch_samples_the_step_after_a_nonfinite_gradient() -> None:
    """On CPU a NaN gradient at step 5 makes step 6 sampled, off the regular spacing."""
    trace = _train(12, nan_at=5, sample_every=1000, dense_steps=0)
    steps, _ = trace.measured("act_mean")
    assert steps.tolist() == [0, 6]
    fixed = _train(12, nan_at=5, sample_every=1000, dense_steps=0, overhead=None)
    assert fixed.measured("act_mean")[0].tolist() == [0]


def test_watch_samples_the_step_after_the_schedule_cuts_the_rate_tenfold() -> None:
    """Under the budget a StepLR(5, 0.1) stepped every batch gets the step after each fall
    sampled (its update ratio at the new rate), off a spacing of 1000; fixed spacing does
    not."""
    options: dict[str, Any] = {"lr": 0.1, "decay_every": 5, "sample_every": 1000}
    trace = _train(14, dense_steps=0, **options)
    steps, ratios = trace.measured("update_ratio")
    assert steps.tolist() == [0, 6, 11]
    # SGD's step is the rate times the gradient: a tenth of the rate, about a tenth the ratio.
    assert np.all(ratios[1] < 0.3 * ratios[0]) and np.all(ratios[2] < 0.3 * ratios[1])
    fixed = _train(14, dense_steps=0, overhead=None, **options)
    assert fixed.measured("update_ratio")[0].tolist() == [0]


def test_a_nan_between_recorded_steps_is_reported_with_the_steps_it_arose_between() -> None:
    """Gradients recorded every 4th step and on the sampled steps (0, 10): a NaN born at step
    9 (in the last layer) is first recorded at step 10, by when it has spread to every layer.
    The finding gives steps 9-10 and does not call the layer it meets first the origin;
    recorded every step it does."""

    def finding(trace: gw.Trace) -> gw.Finding:
        (f,) = [f for f in gw.diagnose(trace) if f.rule == "nonfinite_gradient"]
        return f

    thinned = finding(_train(16, nan_at=9, every=4, dense_steps=0, overhead=None))
    assert thinned.evidence["first_bad_step"] == 10 and thinned.evidence["recorded_before"] == 8
    assert thinned.evidence["origin_exact"] is False
    assert len(thinned.evidence["bad_layers_at_first_step"]) == 2  # spread to both layers
    assert "any of steps 9-10" in thinned.message
    every = finding(_train(16, nan_at=9, dense_steps=0, overhead=None))
    assert every.evidence["first_bad_step"] == 9 and every.evidence["origin_exact"] is True
    assert every.layers == ("2",)


def test_watch_writes_the_budget_and_the_schedule_into_the_config() -> None:
    """config has the budget, the chosen spacings and the measured share; None has none."""
    config = _train(40).config
    assert config["overhead"] == 0.03
    schedule = config["schedule"]
    assert schedule["sample_spacing"] % 10 == 0 and schedule["record_spacing"] >= 1
    assert schedule["steps_measured"] == 20 and schedule["measured_share"] > 0
    fixed = _train(5, overhead=None).config
    assert fixed["overhead"] is None and "schedule" not in fixed


def test_every_hook_call_of_a_sampled_step_is_charged_to_the_budget() -> None:
    """Forward pre-hooks, forward hooks, the activation's hook, the output-gradient tensor
    hooks and the autocast readers (the model's and its first layer's) each charge their host
    time: 2 + 2 + 1 + 2 + 2 calls for one step of a 2-layer MLP."""

    class Timer:
        def __init__(self) -> None:
            self.charged: list[float] = []

        def clock(self) -> float:
            return float(len(self.charged))  # each call then lasts exactly 0 or more "seconds"

        def charge(self, seconds: float) -> None:
            self.charged.append(seconds)

    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    timer = Timer()
    with gw.watch(model, opt, overhead=None) as w:
        w._sampler.timer = timer  # the seam the budget uses; hooks rebuilt with it
        w._sampler.disarm()
        w._sampler.arm()
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
    assert len(timer.charged) == 9


def test_cuda_timer_sums_a_steps_sections_and_waits_for_unfinished_events() -> None:
    """The CUDA timer's arithmetic, with fake events: a step's two sections are summed (the
    optimizer's kernels between them are not), and a step whose last event has not run stays
    pending without blocking."""
    from gradwatch.recording.schedule import CudaTimer

    now = [0.0]
    done = [True]

    class FakeEvent:
        def __init__(self, enable_timing: bool) -> None:
            self.at = 0.0

        def record(self) -> None:
            self.at = now[0]

        def query(self) -> bool:
            return done[0]

        def elapsed_time(self, end: FakeEvent) -> float:
            return (end.at - self.at) * 1000.0  # milliseconds, as CUDA's

    timer = CudaTimer.__new__(CudaTimer)
    timer._event_type = FakeEvent
    timer._free, timer._open = [], []
    from collections import deque

    timer._pending = deque()
    timer.start()  # pre-hook work: 2 s
    now[0] += 2.0
    timer.pause()
    now[0] += 100.0  # the optimizer's own kernels
    timer.start()  # post-hook work: 3 s
    now[0] += 3.0
    timer.stop("sampled", True)
    done[0] = False
    assert timer.poll() == []  # not run yet: no wait, nothing read
    done[0] = True
    assert timer.poll() == [("sampled", True, 5.0)]
    assert len(timer._free) == 4  # events reused


def test_recording_too_costly_for_any_spacing_thins_plain_steps_to_the_widest() -> None:
    """When nothing fits the budget (the flushes alone exceed it), plain statistics go to the
    widest spacing instead of failing on an infinite one."""
    schedule, clock = make()
    schedule.charge_flush(1000.0)  # a flush that dwarfs every step
    run = simulate(schedule, clock, range(1000), Costs(plain=0.5, sampled=1.0))
    from gradwatch.recording.schedule import _MAX_RECORD_SPACING

    # The widest plain spacing: a non-finite gradient is still seen within 100 steps.
    assert schedule.record_spacing == _MAX_RECORD_SPACING == 100
    gaps = [b - a for a, b in itertools.pairwise(run.recorded)]
    assert max(gaps) <= 100 and 300 in run.recorded


def test_steps_that_record_nothing_are_not_timed_on_the_device() -> None:
    """Only steps that launch the recorder's kernels get device events (an idle step's cost
    is its host time; four event records would dominate it on a short GPU step); the cost
    breakdown is in the schedule's metadata."""

    class CountingTimer:
        def __init__(self) -> None:
            self.stopped: list[str] = []
            self.open = 0

        def start(self) -> None:
            self.open += 1

        def pause(self) -> None:
            pass

        def stop(self, kind: str, counted: bool) -> None:
            self.stopped.append(kind)

        def poll(self) -> list[tuple[str, bool, float]]:
            return []

    timer = CountingTimer()
    clock = FakeClock()
    schedule = Schedule(
        every=4, sample_every=8, dense_steps=0, budget=0.03, clock=clock, device_timer=timer
    )
    simulate(schedule, clock, range(16), Costs())
    assert timer.stopped.count("idle") == 0
    assert len(timer.stopped) == sum(1 for s in range(16) if s % 4 == 0)
    meta = schedule.meta()
    assert set(meta["cost_ms"]) == {
        "idle",
        "plain",
        "sampled",
        "sampled_indirect",
        "flush_per_step",
        "user_step",
    }
    assert meta["cost_ms"]["user_step"] == pytest.approx(1000.0)


def test_distributed_spacings_change_only_when_the_ranks_agree() -> None:
    """Under torch.distributed a sampled step places the next one with the spacing in force
    and plans nothing: ``proposal`` says what this rank's costs call for without adopting it,
    and ``adopt`` (at a flush, the maximum over ranks) changes it."""
    alone, clock = make()
    assert simulate(alone, clock, range(300), Costs()).sampled[-3:] == [210, 240, 270]
    schedule, clock = make()
    schedule.distributed = True
    run = simulate(schedule, clock, range(300), Costs())
    assert run.sampled[20:] == list(range(20, 300, 10))  # never replanned alone
    assert schedule.proposal() == (30, 1) and schedule.sample_spacing == 10  # not adopted
    schedule.adopt(45.0, 1.0)  # another rank's wider spacing: rounded up to sample_every
    run = simulate(schedule, clock, range(300, 500), Costs())
    assert schedule.sample_spacing == 50 and run.sampled == [300, 350, 400, 450]
    # A narrower spacing agreed on brings forward a next sampled step placed with a wide one
    # (on every rank alike: they sampled the same steps).
    schedule.adopt(1000.0, 1.0)
    run = simulate(schedule, clock, range(500, 700), Costs())
    assert run.sampled == [500]
    schedule.adopt(100.0, 1.0)
    run = simulate(schedule, clock, range(700, 1000), Costs())
    assert run.sampled == [700, 800, 900]  # from the next step on sample_every's multiples
    schedule.force_on_nonfinite = False  # (sharded gradients: seen by one rank only)
    schedule.nonfinite(460)
    assert not schedule.sampled(461)


def test_flush_window_doubles_while_flushes_alone_overrun_a_quarter_of_the_budget() -> None:
    """A flush of 1.5 ms on a 0.3 ms step costs 5% a step at 100 steps a window: the window
    doubles until a flush spread over it costs under a quarter of the 3% budget (800 steps:
    1.9 us a step); a cheap flush keeps the window as it is."""
    schedule, clock = make(dense_steps=0)
    simulate(schedule, clock, range(100), Costs(user=3e-4, plain=0.0, sampled=0.0))
    window, seen = 100, []
    for _ in range(6):
        schedule.charge_flush(1.5e-3)
        window = schedule.flush_window(window, 100, n_layers=5)
        seen.append(window)
    assert seen == [200, 400, 800, 800, 800, 800]
    schedule.charge_flush(1e-6)  # a cheap flush: no reason to grow
    assert schedule.flush_window(100, 100, n_layers=5) == 100
    schedule.charge_flush(1.0)  # however dear a flush, 1600 steps at most
    assert schedule.flush_window(1600, 100, n_layers=5) == 1600


def test_flush_window_keeps_within_its_time_memory_and_rank_caps() -> None:
    """At most 5 s of training a window (halved back when steps grow longer), at most
    400,000 buffered values a metric, and fixed without a budget."""
    schedule, clock = make(dense_steps=0)
    simulate(schedule, clock, range(100), Costs(user=4e-3, plain=0.0, sampled=0.0))
    schedule.charge_flush(1.0)  # (a flush cost far over the budget)
    assert schedule.flush_window(800, 100, n_layers=5) == 800  # 1600 x 4 ms would be 6.4 s
    assert schedule.flush_window(400, 100, n_layers=1000) == 400  # 800 x 1000 > 400,000
    slow, slow_clock = make(dense_steps=0)
    simulate(slow, slow_clock, range(100), Costs(user=0.02, plain=0.0, sampled=0.0))
    slow.charge_flush(1.0)
    assert slow.flush_window(1600, 100, n_layers=5) == 200  # 200 x 20 ms = 4 s
    fixed, fixed_clock = make(budget=None, dense_steps=0)
    simulate(fixed, fixed_clock, range(100), Costs(user=3e-4))
    fixed.charge_flush(1.0)
    assert fixed.flush_window(100, 100, n_layers=5) == 100


def test_a_window_that_grows_records_what_a_fixed_one_does() -> None:
    """Windows lengthened between flushes (buffers and activation sums remade) give the
    trace a fixed 100-step window gives: every metric, scalar and sampled step."""

    def train(grow: bool) -> gw.Trace:
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        with gw.watch(model, opt, sample_every=3, overhead=None, flush_every=100) as w:
            if grow:
                w._auto_flush = True
                w._schedule.flush_window = lambda window, base, n_layers: min(2 * window, 400)
            for step in range(1000):
                opt.zero_grad()
                loss = model(torch.randn(16, 4)).pow(2).mean()
                loss.backward()
                opt.step()
                w.log(loss=loss, step_count=step)
            assert w._buffer.flush_every == (400 if grow else 100)
        return w.trace

    fixed, grown = train(False), train(True)
    assert grown.steps.tolist() == fixed.steps.tolist() == list(range(1000))
    for metric in ("grad_norm", "weight_norm", "update_ratio", "act_mean", "act_dead"):
        s_fixed, m_fixed = fixed.measured(metric)
        s_grown, m_grown = grown.measured(metric)
        assert s_grown.tolist() == s_fixed.tolist()
        np.testing.assert_array_equal(m_grown, m_fixed)
    for name in ("loss", "step_count"):
        np.testing.assert_array_equal(grown.scalar(name), fixed.scalar(name))
    assert grown.config["flush_every"] == 400 and fixed.config["flush_every"] == 100


def test_closing_a_steps_accounting_is_charged_to_the_next_step() -> None:
    """``end()``'s own time (its medians and sums) is the recorder's cost: the next step's."""
    ticks = itertools.count()
    schedule = Schedule(
        every=1, sample_every=10, dense_steps=0, budget=0.03, clock=lambda: 0.001 * next(ticks)
    )
    schedule.begin(0)
    schedule.end()  # reads the clock on entry and on leaving: 1 ms apart
    assert schedule._charged == pytest.approx(0.001)


def test_the_budget_times_the_optimizer_hooks_from_their_first_line() -> None:
    """What runs between a hook's entry and the step's work is charged: a call path made to
    take 5 ms on each of the two hooks shows as 10 ms of the step's cost."""
    now = [0.0]
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gw.watch(model, opt, every=1000, sample_every=1000, dense_steps=1) as w:
        for step in range(2):  # step 0 sampled; step 1 records nothing
            opt.zero_grad()
            model(torch.randn(8, 4)).pow(2).mean().backward()
            if step == 1:
                for name in ("_begin_step", "_end_step"):
                    work = getattr(w, name)

                    def slow(*args: Any, _work: Any = work, **kwargs: Any) -> Any:
                        now[0] += 0.005  # the cold path into the recorder's code
                        return _work(*args, **kwargs)

                    setattr(w, name, slow)
                w._schedule.clock = lambda: now[0]  # still otherwise: only the 5 ms count
                w._schedule._charged = 0.0  # (step 0's accounting, on the real clock)
            opt.step()
        assert w._schedule._host.by_kind["idle"][-1] == pytest.approx(0.010)


def test_a_compiled_optimizer_step_reads_the_budgets_clock_only_outside_the_trace() -> None:
    """Under ``torch.compile(opt.step)`` the hooks' work runs eagerly and is timed from inside
    it: a clock read in the traced hook would charge dynamo's compile to the first steps."""
    entered: list[float | None] = []
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    compiled_step = torch.compile(opt.step, backend="eager")
    with gw.watch(model, opt, dense_steps=1, sample_every=1000) as w:
        work = w._begin_step

        def seen(*args: Any, **kwargs: Any) -> None:
            entered.append(kwargs.get("entered"))
            work(*args, **kwargs)

        w._begin_step = seen  # type: ignore[method-assign]
        for step in range(6):
            opt.zero_grad()
            model(torch.randn(8, 4)).pow(2).mean().backward()
            (compiled_step if step < 4 else opt.step)()
        assert w.trace.steps.tolist() == list(range(6))
    # Step 0 is sampled, and compiled functions run eagerly on sampled steps (compiled.py);
    # steps 1-3 run the compiled step, timed from inside the work; 4-5 are eager.
    assert entered[1:4] == [None] * 3
    assert all(isinstance(entered[k], float) for k in (0, 4, 5))
