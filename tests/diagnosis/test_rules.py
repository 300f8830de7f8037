"""Each rule on hand-built traces: fires just past its threshold, stays quiet just before.

The traces are closed-form profiles (log-linear along depth, geometric over steps), so the
statistic each rule computes is known exactly without running the rule's own code.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from diag_helpers import depth_profile, layers, trace_of

from gradwatch.diagnosis import RULES, Thresholds
from gradwatch.diagnosis._common import depth_span, start_only
from gradwatch.diagnosis.finding import Finding
from gradwatch.trace import LayerInfo, Trace

TH = Thresholds()


def run(rule: str, trace: Trace, **overrides: float) -> Finding | None:
    th = Thresholds.from_overrides({rule: overrides}) if overrides else TH
    return RULES[rule](trace, getattr(th, rule))


# ---------------------------------------------------------------- vanishing_gradient
@pytest.mark.parametrize(
    ("decades", "expected"), [(1.99, None), (2.01, "warning"), (4.01, "critical")]
)
def test_vanishing_fires_past_the_depth_trend(decades: float, expected: str | None) -> None:
    """A grad_rms rising `decades` from first to last layer fires at >= 2 (critical >= 4)."""
    f = run("vanishing_gradient", trace_of(6, 30, {"grad_rms": depth_profile(6, decades)}))
    assert (f.severity if f else None) == expected
    if f:
        assert f.evidence["max_contrast_decades"] == pytest.approx(decades, abs=1e-4)
        assert f.steps == (0, 29)
        # the number is quoted once, with the window it comes from
        assert f.message.count("worst window: median over steps") == 1


def test_vanishing_ignores_one_noisy_step() -> None:
    """A single step with a 10-decade trend among flat steps does not fire (window median)."""
    g = np.tile(depth_profile(6, 0.0), (30, 1))
    g[7] = depth_profile(6, 10.0)
    assert run("vanishing_gradient", trace_of(6, 30, {"grad_rms": g})) is None


@pytest.mark.parametrize(("floor_value", "fires"), [(0.9e-7, True), (1.1e-7, False)])
def test_vanishing_absolute_floor(floor_value: float, fires: bool) -> None:
    """A first layer whose grad_rms stays below SageMaker's 1e-7 fires critical, naming it."""
    g = np.array([floor_value, 3e-7, 3e-7, 3e-7, 3e-7])  # half a decade: no depth trend
    f = run("vanishing_gradient", trace_of(5, 20, {"grad_rms": g}))
    assert (f is not None) == fires
    if f:
        assert f.severity == "critical"
        assert f.layers == ("fc0",)
        assert f.evidence["below_floor"] == {"fc0": pytest.approx(floor_value)}


@pytest.mark.parametrize(
    ("before", "counted"),
    [
        (1e-3, False),  # the layers before it get the gradient: it got past fc2
        (1e-5, False),  # two decades under the largest: still within reach
        (0.9e-5, True),  # just over two decades under: the signal faded before fc2 too
        (0.9e-7, True),  # under the floor themselves: all three count
    ],
)
def test_vanishing_floor_bypassed_by_the_backward_signal(before: float, counted: bool) -> None:
    """A floor layer after a layer whose gradient is over the floor and within 2 decades of
    the largest is bypassed (SegFormer's queries and keys attending to one key on small
    images: 1e-13 while the layers before them get 1e-3): in the evidence, not fired."""
    g = np.array([before, before, 1e-13, 1e-3, 1e-3])
    f = run("vanishing_gradient", trace_of(5, 20, {"grad_rms": g}))
    if before == 1e-3:
        assert f is None
        return
    # Two decades from fc1 to fc3 are a depth contrast of their own (a warning).
    assert f is not None and f.severity == ("critical" if counted else "warning")
    assert ("fc2" in f.evidence.get("below_floor", {})) == counted
    assert ("fc2" in f.evidence.get("below_floor_bypassed", {})) != counted


def test_vanishing_bypassed_layers_leave_the_depth_trend_and_the_severity() -> None:
    """Like MobileViT on 32x32 digits: the first layers 4.6e4x under the
    last for 30 steps, then flat; two late attention layers at 1e-13 throughout. The early
    contrast has resolved, so the finding is info, the bypassed layers reported only; and
    the 1e-13 layers do not enter the least-squares trend (counted, they read the flat rows
    as a 6.7-decade fall toward the output and the early rows as a 4.5-decade fall, hiding
    the vanishing)."""
    g = np.tile(np.full(8, 1e-3), (100, 1))
    g[:30] = depth_profile(8, 4.66)
    g[:, [5, 6]] = 1e-13
    f = run("vanishing_gradient", trace_of(8, 100, {"grad_rms": g}))
    assert f is not None and f.severity == "info"
    assert set(f.evidence["below_floor_bypassed"]) == {"fc5", "fc6"}
    kept = np.log10(g[:30][:, [0, 1, 2, 3, 4, 7]])
    assert f.evidence["max_contrast_decades"] == pytest.approx(depth_span(kept)[0], abs=1e-4)
    assert f.evidence["last_window_contrast_decades"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("fc0_ratio", "others", "counted"),
    [
        (1e-3, 1e-3, False),  # moves like the others: Adam rescaled its tiny gradient
        (1.1e-5, 1e-3, False),  # just within 2 decades of the others, above 1e-5
        (0.9e-5, 1e-3, True),  # under the absolute 1e-5
        (0.9e-4, 1e-2, True),  # 1e-4 would be 2 decades under the others: just past it
        (1e-9, 1e-9, True),  # nothing moves at all: the floor stands
        (math.nan, 1e-3, True),  # no ratio recorded for the floor layer
    ],
)
def test_vanishing_floor_counts_only_layers_that_do_not_move(
    fc0_ratio: float, others: float, counted: bool
) -> None:
    """A floor layer whose recorded update ratio is >= 1e-5 and within 2 decades of the
    layers' median is moving (an adaptive optimizer): reported in the evidence, not fired."""
    g = np.array([0.9e-7, 3e-7, 3e-7, 3e-7, 3e-7])
    ratio = np.array([fc0_ratio, others, others, others, others])
    f = run("vanishing_gradient", trace_of(5, 20, {"grad_rms": g, "update_ratio": ratio}))
    if counted:
        assert f is not None and f.severity == "critical"
        assert "below_floor_moving" not in f.evidence
    else:
        assert f is None


def test_vanishing_floor_reads_update_ratios_of_the_floor_window_only() -> None:
    """Update ratios from before the floor's last window say nothing about it; a contrast
    finding still reports the moving floor layers, and its severity is the contrast's."""
    g = np.tile(depth_profile(5, 3.0, base=0.9e-7), (20, 1))  # only fc0 under 1e-7
    ratio = np.full((20, 5), math.nan)
    ratio[::5] = 1e-3  # sampled every 5th step: steps 0, 5, 10, 15
    f = run("vanishing_gradient", trace_of(5, 20, {"grad_rms": g, "update_ratio": ratio}))
    assert f is not None and f.severity == "warning"  # 3 decades: a warning
    assert f.evidence["below_floor_moving"] == {
        "fc0": {"grad_rms": pytest.approx(0.9e-7), "update_ratio": pytest.approx(1e-3)}
    }
    ratio = ratio.copy()  # the trace made its arrays read-only
    ratio[10:] = math.nan  # none sampled in the last window (steps 10-19)
    f = run("vanishing_gradient", trace_of(5, 20, {"grad_rms": g, "update_ratio": ratio}))
    assert f is not None and f.severity == "critical"
    assert f.evidence["below_floor"] == {"fc0": pytest.approx(0.9e-7)}


def test_vanishing_names_the_largest_drop_from_out_grad_norm() -> None:
    """The backward gain profile (out_grad_norm) locates the block where the gradient dies."""
    g = depth_profile(6, 3.0)
    ogn = np.array([1e-4, 1e-4, 1.0, 1.0, 2.0, 2.0])  # dies between fc2 and fc1
    f = run("vanishing_gradient", trace_of(6, 20, {"grad_rms": g, "out_grad_norm": ogn}))
    assert f is not None
    drop = f.evidence["largest_drop"]
    assert (drop["from_layer"], drop["to_layer"], drop["source"]) == ("fc2", "fc1", "out_grad_norm")
    assert drop["factor"] == pytest.approx(1e4)
    assert f.layers[:2] == ("fc2", "fc1")


def test_vanishing_falls_back_to_grad_rms_for_the_drop() -> None:
    """Without out_grad_norm, the largest consecutive grad_rms drop is named."""
    g = np.array([1e-6, 1e-6, 1e-6, 1e-2, 1e-2, 1e-2])
    f = run("vanishing_gradient", trace_of(6, 20, {"grad_rms": g}))
    assert f is not None
    assert f.evidence["largest_drop"]["from_layer"] == "fc3"
    assert f.evidence["largest_drop"]["to_layer"] == "fc2"
    assert f.evidence["largest_drop"]["source"] == "grad_rms"


def test_vanishing_message_explains_the_sigmoid_bound() -> None:
    """With sigmoid layers the sentence states the 0.25-per-layer derivative bound."""
    trace = trace_of(21, 20, {"grad_rms": depth_profile(21, 5.0)}, activation="Sigmoid")
    f = run("vanishing_gradient", trace)
    assert f is not None
    assert "0.25^20" in f.message
    assert f"{0.25**20:.1g}" in f.message
    assert f.remedies[0].id == "relu"


def test_vanishing_skips_normalisation_layers() -> None:
    """LayerNorm layers (tiny, unrelated gradients) are left out of the depth trend."""
    infos = [*layers(4), LayerInfo("norm", "LayerNorm", 4, 32)]
    g = np.append(depth_profile(4, 1.0), 1e-9)  # the norm layer alone would look vanishing
    trace = trace_of(5, 20, {"grad_rms": g}, layer_infos=infos)
    assert run("vanishing_gradient", trace) is None


# ---------------------------------------------------------------- exploding_gradient
@pytest.mark.parametrize(("decades", "fires"), [(1.99, False), (2.01, True)])
def test_exploding_fires_past_the_reversed_depth_trend(decades: float, fires: bool) -> None:
    """grad_rms falling `decades` from first to last layer fires exploding at >= 2."""
    f = run("exploding_gradient", trace_of(6, 30, {"grad_rms": depth_profile(6, -decades)}))
    assert (f is not None) == fires
    if f:
        assert f.evidence["depth"]["first_over_last_decades"] == pytest.approx(decades, abs=1e-4)
        assert f.layers == ("fc0",)
        # a gain compounding over depth: the init, not the rate
        assert "lower_lr" not in [r.id for r in f.remedies]


@pytest.mark.parametrize(
    ("backward_decades", "numel", "fires"),
    [
        (0.0, True, False),  # flat backward signal: the grad_rms trend is the layers' shapes
        (1.9, True, False),
        (2.1, True, True),
        (0.0, False, True),  # no output sizes (an older trace): grad_rms alone, as before
    ],
)
def test_exploding_depth_needs_the_backward_signal_to_grow(
    backward_decades: float, numel: bool, fires: bool
) -> None:
    """A CNN that downsamples: grad_rms falls 2.5 decades from the first layer to the last
    (early weights are shared over more positions), while the gradient reaching each
    layer's output, per element, grows only ``backward_decades`` toward the input."""
    n = 6
    sizes = 4.0 ** np.arange(n)[::-1] * 10  # outputs shrink 4x a layer: 10240 ... 10
    per_element = depth_profile(n, -backward_decades)  # first layers larger
    infos = [
        dataclasses.replace(info, out_numel=int(size) if numel else None)
        for info, size in zip(layers(n), sizes, strict=True)
    ]
    metrics = {
        "grad_rms": depth_profile(n, -2.5),
        "out_grad_norm": per_element * np.sqrt(sizes),
    }
    f = run("exploding_gradient", trace_of(n, 30, metrics, layer_infos=infos))
    assert (f is not None) == fires
    if f is not None:
        assert f.evidence["depth"]["first_over_last_decades"] == pytest.approx(2.5, abs=1e-4)
        if numel:
            got = f.evidence["depth"]["backward_signal_first_over_last_decades"]
            assert got == pytest.approx(backward_decades, abs=1e-4)


def test_exploding_depth_trend_in_the_first_window_only_says_so() -> None:
    """A 3-decade reversed depth trend in steps 0-9 and a flat profile for the 90 steps
    after: the finding names the start, and the later measurements under the threshold."""
    g = np.tile(depth_profile(6, 0.0), (100, 1))
    g[:10] = depth_profile(6, -3.0)
    f = run("exploding_gradient", trace_of(6, 100, {"grad_rms": g}))
    assert f is not None and f.steps is not None and f.steps[1] < 50
    seen = f.evidence["start_only"]
    assert seen["until_step"] == f.steps[1] and seen["last_step"] == 99
    assert f"Seen in steps {f.steps[0]}-{f.steps[1]} only" in f.message


def _norm_with_spikes(height: float, at: list[int], n: int = 80) -> np.ndarray:
    t = np.arange(n)
    base = 1.0 + 0.05 * np.sin(t)  # small, deterministic wiggle: MAD > 0
    base[at] = height
    return base


@pytest.mark.parametrize(
    ("height", "at", "expected"),
    [
        (9.5, [30, 45, 60], None),
        (10.5, [30, 45, 60], "warning"),
        (10.5, [30], "info"),
        (1001.0, [30], "critical"),
    ],
)
def test_exploding_spikes_over_the_trailing_median(
    height: float, at: list[int], expected: str | None
) -> None:
    """Global-norm spikes >= 10x the trailing median fire; one alone is info, 1000x critical."""
    trace = trace_of(
        3, 80, {"grad_rms": np.ones(3)}, scalars={"global_grad_norm": _norm_with_spikes(height, at)}
    )
    f = run("exploding_gradient", trace)
    assert (f.severity if f else None) == expected
    if f:
        assert f.evidence["spikes"]["steps"] == at
        assert f.evidence["spikes"]["max_ratio_to_trailing_median"] == pytest.approx(
            height / 1.0, rel=0.06
        )


@pytest.mark.parametrize(
    ("at", "episodes", "expected"),
    [
        ([30, 31, 32, 60], 2, "info"),  # HF RoBERTa under AdamW 1e-3: one run of three, one more
        ([30, 45, 60], 3, "warning"),
        ([30, 31, 45, 60], 3, "warning"),
    ],
)
def test_exploding_spikes_in_consecutive_rows_are_one_episode(
    at: list[int], episodes: int, expected: str
) -> None:
    """Spikes in consecutive rows count once toward the three a warning needs; the message
    says so when they do."""
    trace = trace_of(
        3, 80, {"grad_rms": np.ones(3)}, scalars={"global_grad_norm": _norm_with_spikes(15, at)}
    )
    f = run("exploding_gradient", trace)
    assert f is not None and f.severity == expected
    assert f.evidence["spikes"]["count"] == len(at)
    assert f.evidence["spikes"]["episodes"] == episodes
    said = f"{len(at)} spikes" + (f" in {episodes} episodes" if episodes < len(at) else ")")
    assert said in f.message


def _spikes_over_the_loss(at: list[int], loss: np.ndarray) -> Finding | None:
    """exploding_gradient of 100 steps with 20x global-norm spikes ``at`` and ``loss``."""
    norm = _norm_with_spikes(20.0, at, n=100)
    scalars = {"global_grad_norm": norm, "loss": loss}
    return run("exploding_gradient", trace_of(3, 100, {"grad_rms": np.ones(3)}, scalars=scalars))


@pytest.mark.parametrize(
    ("rise", "jump", "felt", "expected"),
    [
        (1.0, None, 0, "info"),  # the loss kept its level after each: hard batches
        (1.45, None, 0, "info"),  # just under loss_spike_factor
        (1.55, None, 3, "warning"),
        (math.inf, None, 3, "warning"),  # a non-finite loss after a spike is felt
        (1.0, 1.45, 0, "info"),  # its own batch's loss 5.5x the level, under 1.5x the start
        (1.0, 1.55, 3, "warning"),  # worse than the untrained model: the step wrecked it
    ],
)
def test_exploding_spikes_count_where_the_loss_felt_them(
    rise: float, jump: float | None, felt: int, expected: str
) -> None:
    """Three separate 20x spikes in a loss that fell 2.0 -> 0.5; over the 10 logged losses
    after each, the loss sits at ``rise`` times its level before (1.0 when the model absorbed
    them, as HF ALBERT did twice in three), and at the spike step itself at ``jump`` times the
    start (a hard batch stays under 1.5x it; HF ResNet-50 on small images reached 28.7
    from 2.99 within 10 steps of a spike)."""
    at = [30, 55, 80]  # 25 apart: a window of 10 each side
    loss = np.interp(np.arange(100), [0, 15, 99], [2.0, 0.5, 0.5]) + 0.005 * np.sin(np.arange(100))
    start = float(np.median(loss[:3]))  # the rules' starting loss: its first 3 logged
    for step in at:
        loss[step + 1 : step + 11] *= rise
        if jump is not None:
            loss[step] = jump * start
    f = _spikes_over_the_loss(at, loss)
    assert f is not None and f.severity == expected
    assert f.evidence["spikes"]["felt_by_loss"] == felt
    assert f"(3 spikes, {felt} felt by the loss)" in f.message


@pytest.mark.parametrize(
    ("hard_after", "felt", "expected"),
    [(0.5, 0, "info"), (1.0, 3, "warning")],
    ids=["more_hard_batches_within_the_spread", "a_new_level"],
)
def test_exploding_spikes_in_a_loss_that_swings_between_levels(
    hard_after: float, felt: int, expected: str
) -> None:
    """A classifier's batch losses swing between 0.1 (all right) and 0.5 (a mistake), a
    fifth of them hard. After each of three 20x spikes, half the next 10 batches are hard:
    their median is 3x the median before, yet no higher than the spread before already
    reached, so no spike was felt (HF RoBERTa with dropout and clipping: a warning before).
    After spikes that move the loss to 0.9, above every loss before, they were."""
    rng = np.random.default_rng(0)
    loss = np.where(rng.random(100) < 0.2, 0.5, 0.1)
    loss[:15] = np.linspace(0.7, 0.1, 15)
    at = [30, 55, 80]
    for step in at:
        loss[step - 10 : step] = np.r_[0.5, np.full(9, 0.1)]  # a window before with one hard
        after = np.where(np.arange(10) < 10 * hard_after, 0.5, 0.1)
        loss[step + 1 : step + 11] = after if hard_after < 1 else 0.9
    f = _spikes_over_the_loss(at, loss)
    assert f is not None and f.severity == expected
    assert f.evidence["spikes"]["felt_by_loss"] == felt


def test_exploding_spike_span_reaches_the_last_spike_past_the_listed_twenty() -> None:
    """25 spikes: the evidence lists the first 20 steps, the finding's span ends at the 25th."""
    at = list(range(25, 200, 7))
    assert len(at) == 25
    norm = _norm_with_spikes(20.0, at, n=200)
    f = run("exploding_gradient", trace_of(3, 200, {"grad_rms": np.ones(3)}, scalars={
        "global_grad_norm": norm}))  # fmt: skip
    assert f is not None and f.evidence["spikes"]["count"] == 25
    assert f.evidence["spikes"]["steps"] == at[:20]
    assert f.steps == (25, at[-1])


def test_exploding_a_lone_spike_stays_info_beside_a_depth_trend_that_did_not_count() -> None:
    """MobileViT on 32x32 digits: grad_rms 2.6 decades larger at the first layers than the
    last, the backward signal only 1.9 (weights shared over larger maps), and one 55x spike.
    The depth test recorded why it did not fire; the lone spike is info, as without it."""
    n = 6
    sizes = 4.0 ** np.arange(n)[::-1] * 10
    infos = [
        dataclasses.replace(info, out_numel=int(size))
        for info, size in zip(layers(n), sizes, strict=True)
    ]
    metrics = {
        "grad_rms": depth_profile(n, -2.6),
        "out_grad_norm": depth_profile(n, -1.9) * np.sqrt(sizes),
    }
    norm = {"global_grad_norm": _norm_with_spikes(55.0, [50])}
    f = run("exploding_gradient", trace_of(n, 80, metrics, layer_infos=infos, scalars=norm))
    assert f is not None and f.severity == "info"
    assert set(f.evidence) >= {"depth_not_backward", "spikes"}


@pytest.mark.parametrize(("final_loss", "fires"), [(0.01, False), (0.5, True)])
def test_exploding_spikes_are_judged_while_the_model_learns(final_loss: float, fires: bool) -> None:
    """Three 20x spikes after step 30, where the loss has fallen from 2.3 to ``final_loss``:
    below a tenth of its start the model has finished (a batch holding one of its few errors
    is many times the median; the loss does not move), so no spike counts; above, they do."""
    loss = np.interp(np.arange(80), [0, 25, 79], [2.3, final_loss, final_loss])
    trace = trace_of(
        3,
        80,
        {"grad_rms": np.ones(3)},
        scalars={"global_grad_norm": _norm_with_spikes(20.0, [40, 55, 70]), "loss": loss},
    )
    f = run("exploding_gradient", trace)
    assert (f is not None) == fires
    if f is not None:
        assert f.evidence["spikes"]["steps"] == [40, 55, 70]


def test_exploding_spike_names_the_layer_that_jumped() -> None:
    """The layer whose own grad_norm jumped most at the first spike is named."""
    at = [30, 45, 60]
    gn = np.ones((80, 3)) + 0.01 * np.sin(np.arange(80))[:, None]
    gn[at, 1] = 30.0  # fc1 carries the spike
    glob = np.sqrt((gn**2).sum(axis=1))
    trace = trace_of(3, 80, {"grad_norm": gn}, scalars={"global_grad_norm": glob})
    f = run("exploding_gradient", trace)
    assert f is not None and f.severity == "warning"
    assert f.layers == ("fc1",)
    assert f.evidence["spikes"]["layer_at_first_spike"] == "fc1"
    assert f.evidence["spikes"]["steps"] == at


@pytest.mark.parametrize(("decades_per_step", "fires"), [(1 / 40, False), (1 / 20, True)])
def test_exploding_sustained_growth(decades_per_step: float, fires: bool) -> None:
    """A global norm growing 10^(t/20) over 60 steps (2.5 decades) fires; 10^(t/40) does not."""
    t = np.arange(60)
    trace = trace_of(
        3,
        60,
        {"grad_rms": np.ones(3)},
        scalars={"global_grad_norm": 10.0 ** (t * decades_per_step)},
    )
    f = run("exploding_gradient", trace)
    assert (f is not None) == fires
    if f:
        # Window medians sit at t = 4.5 and 54.5: 50 steps apart.
        assert f.evidence["growth"]["decades"] == pytest.approx(50 * decades_per_step, rel=1e-4)
        assert "spikes" not in f.evidence
        # growth over steps: updates too large, so a lower rate after the clip
        assert [r.id for r in f.remedies[:2]] == ["clip_norm", "lower_lr"]


def test_exploding_rebuilds_the_global_norm_from_layer_norms() -> None:
    """Without the global_grad_norm scalar, sqrt(sum grad_norm^2) is used."""
    t = np.arange(60)[:, None]
    gn = np.repeat(10.0 ** (t / 20), 4, axis=1) / 2.0  # 4 equal layers: global = 10^(t/20)
    f = run("exploding_gradient", trace_of(4, 60, {"grad_norm": gn}))
    assert f is not None
    assert f.evidence["growth"]["last_window_median"] == pytest.approx(10 ** (54.5 / 20), rel=1e-4)


# ---------------------------------------------------------------- nonfinite_gradient
def _nonfinite(n_steps: int, bad: dict[int, list[int]], n_layers: int = 4) -> np.ndarray:
    m = np.zeros((n_steps, n_layers))
    for step, cols in bad.items():
        m[step, cols] = 2.0
    return m


def test_nonfinite_names_first_step_and_deepest_layer_first() -> None:
    """The first bad step is reported with its bad layers in backward order (deepest first)."""
    trace = trace_of(4, 10, {"nonfinite": _nonfinite(10, {5: [1, 3], 6: [0, 1, 2, 3]})})
    f = run("nonfinite_gradient", trace)
    assert f is not None
    assert f.severity == "critical"
    assert f.layers == ("fc3", "fc1")
    assert f.evidence["first_bad_step"] == 5
    assert f.steps == (5, 6)


def test_nonfinite_after_unrecorded_steps_gives_the_steps_it_arose_between() -> None:
    """Gradients recorded every 4th step (the budget's thinning): the first bad step recorded,
    12, may come after the NaN arose (at 9, here) and spread to every layer, so the finding
    gives steps 9-12 and does not claim the layer it names is the origin. With every step
    recorded the origin is exact."""
    nf = _nonfinite(16, {k: [0, 1, 2, 3] for k in range(9, 16)})
    thinned = nf.copy()
    thinned[[k for k in range(16) if k % 4]] = np.nan
    f = run("nonfinite_gradient", trace_of(4, 16, {"nonfinite": thinned}))
    assert f is not None and f.severity == "critical"
    assert f.evidence["first_bad_step"] == 12 and f.evidence["recorded_before"] == 8
    assert f.evidence["origin_exact"] is False
    assert "any of steps 9-12" in f.message and "need not be where it began" in f.message
    thinned = thinned.copy()
    thinned[11] = nf[11]
    f = run("nonfinite_gradient", trace_of(4, 16, {"nonfinite": thinned}))
    assert f is not None and f.evidence["first_bad_step"] == 11
    assert f.evidence["recorded_before"] == 8 and f.evidence["origin_exact"] is False
    f = run("nonfinite_gradient", trace_of(4, 16, {"nonfinite": nf}))
    assert f is not None and f.evidence["origin_exact"] is True
    assert f.evidence["recorded_before"] == 8 and "first reached the weights at step 9" in f.message


def test_nonfinite_quiet_when_all_finite() -> None:
    """No nonfinite count and no skipped step: no finding."""
    trace = trace_of(4, 10, {"nonfinite": _nonfinite(10, {})}, scalars={"skipped": np.zeros(10)})
    assert run("nonfinite_gradient", trace) is None


def test_nonfinite_infinite_norm_counts_without_the_count_metric() -> None:
    """An inf grad_norm marks the layer bad even when nonfinite was not recorded."""
    gn = np.ones((10, 3))
    gn[4, 2] = np.inf
    f = run("nonfinite_gradient", trace_of(3, 10, {"grad_norm": gn}))
    assert f is not None and f.layers == ("fc2",) and f.evidence["first_bad_step"] == 4


def test_nonfinite_infinite_norm_of_finite_entries_is_not_nonfinite() -> None:
    """Where the count was recorded as 0, an inf grad_norm is a float32 norm overflow of
    finite entries (the no-norm ResNet of the real corpus at step 18): the first bad step is
    the first with a non-finite entry."""
    gn = np.ones((10, 3))
    gn[4, 2] = np.inf  # entries ~1e20: finite, their squares overflow float32
    nf = np.zeros((10, 3))
    nf[5, 2] = 3.0
    f = run("nonfinite_gradient", trace_of(3, 10, {"grad_norm": gn, "nonfinite": nf}))
    assert f is not None and f.evidence["first_bad_step"] == 5
    nf = np.zeros((10, 3))  # no non-finite entry at all: nothing to report
    assert run("nonfinite_gradient", trace_of(3, 10, {"grad_norm": gn, "nonfinite": nf})) is None


def _skips(n: int, where: list[int]) -> np.ndarray:
    s = np.zeros(n)
    s[where] = 1.0
    return s


@pytest.mark.parametrize(
    ("n_steps", "skipped", "expected"),
    [
        (100, [5], "info"),
        (100, [3, 20, 40, 60, 80], "info"),  # 5% exactly: not above the 5% bound
        (100, [3, 20, 40, 60, 80, 90], "warning"),  # 6%
        (100, [*range(15), 50], "info"),  # a leading calibration run, then 1 of 85
        (100, list(range(0, 60, 10)), "warning"),  # after the leading skip: 5 of 99 > 5%
        (400, list(range(10, 26)), "info"),  # 16 in a row: calibration
        (400, list(range(10, 27)), "warning"),  # 17 in a row
    ],
)
def test_gradscaler_skips_are_info_unless_they_persist(
    n_steps: int, skipped: list[int], expected: str
) -> None:
    """Skipped overflow steps are GradScaler's calibration (info) until too many or too long."""
    bad = {s: [2] for s in skipped}
    trace = trace_of(
        4,
        n_steps,
        {"nonfinite": _nonfinite(n_steps, bad)},
        scalars={"skipped": _skips(n_steps, skipped)},
    )
    f = run("nonfinite_gradient", trace)
    assert f is not None and f.severity == expected
    assert f.evidence["skipped_steps"] == len(skipped)


def test_unskipped_nonfinite_is_critical_even_with_skips() -> None:
    """A bad step the optimizer did not skip is a failure, reported at that step."""
    trace = trace_of(
        4,
        100,
        {"nonfinite": _nonfinite(100, {3: [2], 50: [0]})},
        scalars={"skipped": _skips(100, [3])},
    )
    f = run("nonfinite_gradient", trace)
    assert f is not None and f.severity == "critical"
    assert f.evidence["first_bad_step"] == 50 and f.layers == ("fc0",)


# ---------------------------------------------------------------- stalled_early_layers
@pytest.mark.parametrize(("decades", "fires"), [(1.99, False), (2.01, True)])
def test_stalled_early_layers_from_update_ratio_trend(decades: float, fires: bool) -> None:
    """Update ratios rising `decades` from first to last layer fire at >= 2; fc0 named first."""
    ur = depth_profile(6, decades, base=1e-5)
    f = run("stalled_early_layers", trace_of(6, 20, {"update_ratio": ur}))
    assert (f is not None) == fires
    if f:
        assert f.evidence["late_over_early_decades"] == pytest.approx(decades, abs=1e-4)
        assert f.layers[0] == "fc0"


# ---------------------------------------------------------------- collapsing_weights
def _span_ratio(w: np.ndarray, spans: int = 10) -> float:
    parts = np.array_split(w, spans)
    return float(np.median(parts[-1]) / np.median(parts[0]))


@pytest.mark.parametrize(("target", "fires"), [(0.49, True), (0.51, False), (0.09, True)])
def test_collapsing_weights_geometric_decay(target: float, fires: bool) -> None:
    """A weight norm decaying geometrically fires when last/first span medians < 0.5."""
    t = np.arange(100)
    # Span medians sit at t = 4.5 and 94.5: choose the rate so their ratio is `target`.
    w = 3.0 * target ** (t / 90.0)
    assert _span_ratio(w) == pytest.approx(target, rel=1e-6)  # independent reference
    f = run("collapsing_weights", trace_of(3, 100, {"weight_norm": np.tile(w[:, None], (1, 3))}))
    assert (f is not None) == fires
    if f:
        assert f.severity == ("critical" if target < 0.1 else "warning")
        assert f.evidence["final_over_initial"]["fc0"] == pytest.approx(target, rel=1e-4)


def _decaying_norms(n_layers: int = 3, steps: int = 100, to: float = 0.3) -> np.ndarray:
    """Weight norms falling geometrically to ``to`` of their start over ``steps`` steps."""
    w = 3.0 * to ** (np.arange(steps) / (steps - 1))
    return np.tile(w[:, None], (1, n_layers))


@pytest.mark.parametrize(
    ("loss", "severity"),
    [
        (np.full(100, 2.3), "warning"),  # stuck: the drift is the failure
        (2.3 - 0.8 * np.arange(100) / 99, "info"),  # improving to 1.5: regularisation
        (np.r_[2.3 - 0.8 * np.arange(50) / 49, np.full(50, 2.3)], "warning"),  # gave it back
    ],
)
def test_collapsing_weights_tells_regularisation_from_collapse(
    loss: np.ndarray, severity: str
) -> None:
    """The same drift is a warning under a stuck or relapsing loss and info under an improving
    one (weight decay shrinking what the loss does not hold up), with no remedy then."""
    trace = trace_of(3, 100, {"weight_norm": _decaying_norms()}, scalars={"loss": loss})
    f = run("collapsing_weights", trace)
    assert f is not None and f.severity == severity
    assert f.evidence["loss_improving"] is (severity == "info")
    assert bool(f.remedies) is (severity == "warning")
    assert "while the loss went 2." in f.message  # its start, then its end


@pytest.mark.parametrize(("rate", "by_decay"), [(13.4, True), (0.1, False), (0.0, False)])
def test_collapsing_weights_says_whether_weight_decay_alone_shrank_them(
    rate: float, by_decay: bool
) -> None:
    """The recorded decay per unit of learning rate (config.weight_decay) over the first
    span's middle to the last's (steps 4 to 94, 90 steps at lr 1e-3) predicts what decay
    alone does, exp(-0.09 x rate): 0.30 at 13.4, where the norms went to 0.3 (the decay did
    it, and to lower it is the advice), 0.99 at 0.1 and 1 without decay (the updates took
    them down: no word of weight decay pulling)."""
    lr = np.full(100, 1e-3)
    trace = trace_of(
        3, 100, {"weight_norm": _decaying_norms()},
        scalars={"loss": np.full(100, 2.3), "optimizer_lr": lr},
    )  # fmt: skip
    per_lr = {f"fc{i}": rate for i in range(3)} if rate else {}
    trace.meta["config"] = {"weight_decay": {"form": "decoupled", "per_lr": per_lr}}
    f = run("collapsing_weights", trace)
    assert f is not None and f.severity == "warning"
    assert f.evidence["decay_alone"]["fc0"] == pytest.approx(math.exp(-0.09 * rate), rel=1e-5)
    assert ("pulls harder than the loss pushes" in f.message) is by_decay
    assert ("the updates themselves took them down" in f.message) is not by_decay
    if by_decay:
        assert "(the optimizer's weight decay alone: 0.3)" in f.message
    elif rate == 0:
        assert "where the optimizer does not decay them" in f.message
    trace.meta["config"]["weight_decay"]["form"] = None  # Adam's L2: no rate known
    f = run("collapsing_weights", trace)
    assert f is not None and "decay_alone" not in f.evidence
    assert "pulls harder than the loss pushes" in f.message


def test_collapsing_weights_without_a_loss_says_what_it_cannot_tell() -> None:
    """No loss logged: still a warning (it may be a collapse), saying a logged loss would tell
    regularisation apart."""
    f = run("collapsing_weights", trace_of(3, 100, {"weight_norm": _decaying_norms()}))
    assert f is not None and f.severity == "warning" and "loss_improving" not in f.evidence
    assert "No loss was logged: with w.log(loss=...)" in f.message


def test_collapsing_weights_quiet_once_the_model_has_finished() -> None:
    """Weights that shrink only after the loss fell to a tenth of its start (the loss's
    gradient is tiny, decay acts unopposed) are not judged: the drift before is flat."""
    t = np.arange(200)
    loss = np.where(t < 50, 2.3 * 0.01 ** (t / 50), 0.023)
    w = np.where(t < 60, 3.0, 3.0 * 0.3 ** ((t - 60) / 139))
    trace = trace_of(2, 200, {"weight_norm": np.tile(w[:, None], (1, 2))}, scalars={"loss": loss})
    assert run("collapsing_weights", trace) is None
    # The same drift with the loss never finishing is judged.
    stuck = trace_of(
        2, 200, {"weight_norm": np.tile(w[:, None], (1, 2))}, scalars={"loss": 2.3 + 0 * t}
    )
    assert run("collapsing_weights", stuck) is not None


def test_collapsing_weights_offers_no_norm_layer_to_a_norm_layer() -> None:
    """A LayerNorm gain drifting to zero is not mended by adding a LayerNorm or He's init."""
    infos = [
        LayerInfo(name="ln", type="LayerNorm", depth=0, num_params=32,
                  shapes={"weight": [16], "bias": [16]}, role="norm"),
    ]  # fmt: skip
    trace = trace_of(1, 100, {"weight_norm": _decaying_norms(1)}, layer_infos=infos)
    f = run("collapsing_weights", trace)
    assert f is not None and f.severity == "warning" and f.remedies == ()
    assert "Exclude normalisation gains from weight decay" in f.message


def test_collapsing_weights_ignores_one_jump() -> None:
    """A single drop at the end (not a drift) does not fire: the spans do not fall steadily."""
    w = np.full(100, 3.0)
    w[95:] = 0.3
    assert run("collapsing_weights", trace_of(1, 100, {"weight_norm": w[:, None]})) is None


# ---------------------------------------------------------------- loss_plateau
def test_loss_plateau_fires_on_a_flat_loss() -> None:
    """A loss flat from the start (tiny noise) fires from step 0."""
    loss = 2.3 + 0.001 * np.sin(np.arange(100))
    f = run("loss_plateau", trace_of(1, 100, {}, scalars={"loss": loss}))
    assert f is not None and f.evidence["plateau_from_step"] == 0


def test_loss_plateau_quiet_while_improving() -> None:
    """A loss falling 3% per step is never a plateau."""
    loss = 2.3 * 0.97 ** np.arange(100)
    assert run("loss_plateau", trace_of(1, 100, {}, scalars={"loss": loss})) is None


@pytest.mark.parametrize(("stop", "fires"), [(40, True), (60, False)])
def test_loss_plateau_only_when_it_starts_early(stop: int, fires: bool) -> None:
    """Learning until 40% then flat fires (early); until 60% then flat does not."""
    t = np.arange(100)
    loss = 2.3 * 0.97 ** np.minimum(t, stop)
    f = run("loss_plateau", trace_of(1, 100, {}, scalars={"loss": loss}))
    assert (f is not None) == fires
    if f:
        assert f.evidence["plateau_from_step"] == stop


def _cosine(n: int, warmup: int = 0) -> np.ndarray:
    """A learning rate rising linearly over ``warmup`` steps, then cosine-decaying to 0."""
    t = np.arange(n)
    decay = 0.5 * (1 + np.cos(np.pi * np.clip(t - warmup, 0, None) / (n - warmup)))
    return 1e-3 * np.where(t < warmup, (t + 1) / max(warmup, 1), decay)


@pytest.mark.parametrize("name", ["optimizer_lr", "learning_rate", "lr"])
def test_loss_plateau_counts_the_run_in_learning_rate(name: str) -> None:
    """Learning until 40% of the steps, then flat, under a cosine decay: 70% of the summed
    learning rate was spent by then, so the loss flattened as the rate fell (quiet); the
    same curve under a constant rate fires, as above. The recorder's ``optimizer_lr`` or a
    logged ``learning_rate``/``lr`` is read."""
    t = np.arange(100)
    loss = 2.3 * 0.97 ** np.minimum(t, 40)
    assert (
        run("loss_plateau", trace_of(1, 100, {}, scalars={"loss": loss, name: _cosine(100)}))
        is None
    )
    f = run("loss_plateau", trace_of(1, 100, {}, scalars={"loss": loss, name: np.full(100, 1e-3)}))
    assert f is not None and f.evidence["lr_spent_before"] == pytest.approx(0.4)
    assert "(4/10 of the way through the logged steps) the" in f.message


@pytest.mark.parametrize("warmup", [0, 20])
def test_loss_plateau_stuck_from_the_start_fires_under_any_schedule(warmup: int) -> None:
    """A loss flat from step 0 has spent none of the learning rate first, decaying or not,
    with a warm-up or not: it fires."""
    loss = 2.3 + 0.001 * np.sin(np.arange(100))
    lr = _cosine(100, warmup)
    f = run("loss_plateau", trace_of(1, 100, {}, scalars={"loss": loss, "optimizer_lr": lr}))
    assert f is not None and f.evidence["plateau_from_step"] == 0
    assert f.evidence["lr_spent_before"] == 0.0


def test_loss_plateau_names_the_learning_rate_share_when_the_schedule_moves_it() -> None:
    """Flat from 30% of the steps under a cosine decay (55% of the summed rate spent; with
    early_fraction 0.6): the message gives both shares."""
    loss = 2.3 * 0.97 ** np.minimum(np.arange(100), 30)
    trace = trace_of(1, 100, {}, scalars={"loss": loss, "optimizer_lr": _cosine(100)})
    f = run("loss_plateau", trace, early_fraction=0.6)
    assert f is not None
    assert "(3/10 of the way through the logged steps, 55% of the summed learning rate)" in (
        f.message
    )


def test_loss_plateau_needs_the_loss_scalar() -> None:
    """Without a logged loss the rule says nothing."""
    assert run("loss_plateau", trace_of(2, 100, {"grad_rms": np.ones(2)})) is None


# ---------------------------------------------------------------- saturation and dead units
@pytest.mark.parametrize(
    ("rule", "metric", "critical"),
    [("saturated_activation", "act_saturated", 0.9), ("dead_units", "act_dead", 0.99)],
)
@pytest.mark.parametrize(("offset", "expected"), [(-0.01, None), (0.0, None), (0.01, "warning")])
def test_fraction_rules_fire_above_half_a_layer(
    rule: str, metric: str, critical: float, offset: float, expected: str | None
) -> None:
    """More than 50% of a layer (SageMaker's default) fires; exactly 50% does not."""
    frac = np.array([0.1, 0.5 + offset, 0.2])
    f = run(rule, trace_of(3, 20, {metric: frac}))
    assert (f.severity if f else None) == expected
    if f:
        assert f.layers == ("fc1",)
    hot = run(rule, trace_of(3, 20, {metric: np.array([0.1, critical + 0.005, 0.6])}))
    assert hot is not None and hot.severity == "critical" and hot.layers == ("fc1", "fc2")


@pytest.mark.parametrize(
    ("rule", "metric"), [("saturated_activation", "act_saturated"), ("dead_units", "act_dead")]
)
def test_fraction_rules_read_the_end_of_the_run(rule: str, metric: str) -> None:
    """A layer saturated/dead early that recovered is not reported (last 10 samples)."""
    frac = np.full((40, 2), 0.05)
    frac[:25] = 0.95
    assert run(rule, trace_of(2, 40, {metric: frac})) is None


# ---------------------------------------------------------------- poor_initialization
_NEED_RELU = math.sqrt(2.0) / math.sqrt(16)  # He std for a 16-wide ReLU layer


@pytest.mark.parametrize(
    ("ratio", "n_layers", "fires"), [(1.9, 4, False), (2.1, 4, True), (2.1, 3, False)]
)
def test_poor_init_weight_scale_compounds(ratio: float, n_layers: int, fires: bool) -> None:
    """Layers > 2x off the He scale fire once they compound past 10x (2.1^4 = 19, 2.1^3 = 9)."""
    wn = ratio * _NEED_RELU * 16.0  # weight_norm = std * sqrt(16 * 16)
    f = run("poor_initialization", trace_of(n_layers, 5, {"weight_norm": np.full(n_layers, wn)}))
    assert (f is not None) == fires
    if f:
        assert f.evidence["compound_factor"] == pytest.approx(ratio**n_layers, rel=1e-4)


@pytest.mark.parametrize(("std", "fires"), [(0.101, False), (0.099, True)])
def test_poor_init_activation_std_far_from_one(std: float, fires: bool) -> None:
    """A hidden layer starting with activation std 10x below 1 fires."""
    f = run("poor_initialization", trace_of(4, 5, {"act_std": np.array([1.0, std, 1.0, 1.0])}))
    assert (f is not None) == fires
    if f:
        assert f.layers == ("fc1",)


@pytest.mark.parametrize(("k", "fires"), [(0.16, False), (0.17, True)])
def test_poor_init_variance_drift_along_depth(k: float, fires: bool) -> None:
    """Activation std growing 10^(k i) over 4 layers fires when the variance grows >= 10x."""
    std = 10.0 ** (k * np.arange(4))
    f = run("poor_initialization", trace_of(4, 5, {"act_std": std}))
    assert (f is not None) == fires
    if f:
        assert f.evidence["variance_trend_ratio"] == pytest.approx(10 ** (2 * k * 3), rel=1e-4)


@pytest.mark.parametrize(
    ("gain", "fires"), [(1.9, False), (2.1, True), (0.55, False), (0.45, True)]
)
def test_poor_init_backward_gain(gain: float, fires: bool) -> None:
    """||dL/dh|| multiplied by `gain` per layer backward fires beyond 2x either way."""
    ogn = gain ** (3 - np.arange(4))  # last layer 1, first gain^3
    f = run("poor_initialization", trace_of(4, 5, {"out_grad_norm": ogn}))
    assert (f is not None) == fires
    if f:
        assert f.evidence["backward_gain_per_layer"] == pytest.approx(gain, rel=1e-4)


def test_poor_init_reads_only_the_first_rows() -> None:
    """A bad scale that appears late in training is not an initialisation problem."""
    wn = np.full((20, 4), _NEED_RELU * 16.0)
    wn[5:] *= 3.0
    assert run("poor_initialization", trace_of(4, 20, {"weight_norm": wn})) is None


# ---------------------------------------------------------------- short_memory
def _rnn_trace(profile: np.ndarray, rows: int = 5) -> Trace:
    infos = [LayerInfo("rnn", "RNN", 0, 100, recurrent=True), LayerInfo("head", "Linear", 1, 10)]
    return Trace.from_arrays(
        infos,
        np.arange(rows),
        {},
        recurrent={"rnn": (np.arange(rows), np.tile(profile, (rows, 1)))},
    )


@pytest.mark.parametrize(
    ("fall", "expected"), [(1.99, None), (2.01, "warning"), (5.01, "critical")]
)
def test_short_memory_exponential_decay(fall: float, expected: str | None) -> None:
    """A profile decaying `fall` decades over 20 inputs fires at >= 2; horizon = 2 / slope."""
    slope = fall / 19.0
    profile = 10.0 ** (-slope * (19 - np.arange(20)))  # t = 19 is next to the loss
    f = run("short_memory", _rnn_trace(profile))
    assert (f.severity if f else None) == expected
    if f:
        assert f.layers == ("rnn",)
        assert f.evidence["horizon_steps"] == pytest.approx(2.0 / slope, rel=1e-4)
        assert f.evidence["e_folding_steps"] == pytest.approx(1 / (slope * math.log(10)), rel=1e-4)
        assert f.remedies[0].id == "lstm"


def test_short_memory_needs_an_exponential_fit() -> None:
    """A jagged profile with no exponential trend (low R^2) does not fire."""
    profile = np.where(np.arange(20) % 2 == 0, 1e-4, 1.0)
    profile[-1] = 1.0
    assert run("short_memory", _rnn_trace(profile)) is None


# ---------------------------------------------------------------- unstable_updates
@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.09, None), (0.11, "warning"), (11.0, "critical"), (1.1e-8, None), (0.9e-8, "warning")],
)
def test_unstable_updates_thresholds(ratio: float, expected: str | None) -> None:
    """Update ratios above 0.1 (warning), 10 (critical) or below 1e-8 (warning) fire."""
    f = run("unstable_updates", trace_of(3, 12, {"update_ratio": np.array([1e-3, ratio, 1e-3])}))
    assert (f.severity if f else None) == expected
    if f:
        assert f.layers == ("fc1",)


@pytest.mark.parametrize(
    ("loss", "said"),
    [
        (None, "no loss was logged to judge it by"),
        (
            np.r_[2.0, 1.9, np.full(10, np.nan)],
            "only 2 finite loss value(s) were logged, too few to judge it by",
        ),
        (
            -0.1 * np.arange(1, 13),
            "the logged loss starts at -0.2, not above 0, which leaves no progress",
        ),
    ],
    ids=["none", "too_few", "not_positive"],
)
def test_unstable_updates_says_why_the_loss_could_not_judge_the_steps(
    loss: np.ndarray | list[float] | None, said: str
) -> None:
    """A loss that can go below 0 (a log-likelihood; nll_loss given probabilities) was logged
    but cannot judge the steps: the message says so, not "no loss was logged"."""
    scalars = None if loss is None else {"loss": loss}
    ur = {"update_ratio": np.array([1e-3, 0.5, 1e-3])}
    f = run("unstable_updates", trace_of(3, 12, ur, scalars=scalars))
    assert f is not None and said in f.message


def test_unstable_updates_ignores_one_odd_sample() -> None:
    """After the first steps, one sampled step at 100 among healthy ones does not fire (block
    median of 3); in the first 20 steps one step larger than the weights does (see
    test_rules_real_models.py)."""
    ur = np.full((40, 2), 1e-3)
    ur[30, 0] = 100.0
    assert run("unstable_updates", trace_of(2, 40, {"update_ratio": ur})) is None


def test_unstable_updates_confined_to_the_start_says_so() -> None:
    """Updates at 0.5x the weights for the first 12 steps, healthy for the 100 after: the
    finding stands (the start was unstable) and says it is confined to steps 0-11, with the
    later measurements that stay under the threshold; unstable to the end, it says nothing
    of the kind."""
    ur = np.full((112, 3), 1e-3)
    ur[:12, 1] = 0.5
    f = run("unstable_updates", trace_of(3, 112, {"update_ratio": ur}))
    assert f is not None and f.severity == "warning" and f.steps == (0, 11)
    assert f.evidence["start_only"] == {
        "until_step": 11,
        "later_measurements": 100,
        "last_step": 111,
    }
    assert "Seen in steps 0-11 only: the 100 later measurements (to step 111)" in f.message
    ur = ur.copy()
    ur[:, 1] = 0.5
    f = run("unstable_updates", trace_of(3, 112, {"update_ratio": ur}))
    assert f is not None and "start_only" not in f.evidence and "Seen in" not in f.message


def test_start_only_is_evidence_at_the_start_of_a_run_measured_to_its_end() -> None:
    """The sentence is for evidence that begins in the first 10% of what the rule read and
    ends in its first half, with at least 3 measurements after it up to the run's end."""
    steps = np.arange(0, 100, 10)  # 0..90
    sentence, seen = start_only((0, 40), steps, 90)
    assert seen == {"until_step": 40, "later_measurements": 5, "last_step": 90}
    assert sentence == (
        " Seen in steps 0-40 only: the 5 later measurements (to step 90) stay under the threshold."
    )
    assert start_only((0, 0), steps, 90)[0].startswith(" Seen in step 0 only")
    assert start_only((0, 50), steps, 90) == ("", None)  # past the first half
    assert start_only((20, 30), steps, 90) == ("", None)  # begins past the first 10%
    assert start_only((0, 10), steps[:4], 30) == ("", None)  # 2 later measurements only
    assert start_only((0, 10), steps[:6], 90) == ("", None)  # measured only to step 50 of 90
    assert start_only(None, steps, 90) == ("", None)


def test_unstable_updates_remedies_depend_on_the_direction() -> None:
    """Too-large updates are treated by a lower rate, then clipping; too-small ones by giving
    the layer a gradient (no lower rate, no clipping)."""
    big = run("unstable_updates", trace_of(3, 12, {"update_ratio": np.array([1e-3, 1.0, 1e-3])}))
    small = run("unstable_updates", trace_of(3, 12, {"update_ratio": np.array([1e-3, 1e-9, 1e-3])}))
    assert big is not None and small is not None
    assert [r.id for r in big.remedies[:2]] == ["lower_lr", "clip_norm"]
    assert not any(r.id.startswith("clip") or r.id == "lower_lr" for r in small.remedies)


@pytest.mark.parametrize(("branch", "fires"), [(None, True), ("block", False)])
def test_poor_init_activation_std_skips_layers_inside_residual_branches(
    branch: str | None, fires: bool
) -> None:
    """A small activation std inside a residual branch (LayerInfo.branch) is not a poor init:
    the branch's output is added to the main path (GPT-2 and ViT start branches small)."""
    infos = [
        LayerInfo(
            f"fc{i}",
            "Linear",
            i,
            272,
            shapes={"weight": [16, 16], "bias": [16]},
            activation="GELUActivation",
            activation_like="GELU",
            branch=branch if i in (1, 2) else None,
        )
        for i in range(4)
    ]
    trace = trace_of(4, 5, {"act_std": np.array([1.0, 0.05, 0.05, 1.0])}, layer_infos=infos)
    assert (run("poor_initialization", trace) is not None) == fires


@pytest.mark.parametrize(("floor", "rising"), [(0.9, True), (0.002, False)])
def test_loss_plateau_rising_only_above_a_finished_loss(floor: float, rising: bool) -> None:
    """A loss that climbs steadily after its best is rising, unless the best was a finished
    model's (a tenth of the start or less: weight decay eroding 0.002 -> 0.01 is no harm)."""
    t = np.arange(200)
    noise = 1e-3 * floor * np.sin(1.7 * t)
    loss = np.where(t < 20, 2.3 - (2.3 - floor) * t / 20, floor * (1 + 4 * (t - 20) / 179)) + noise
    f = run("loss_plateau", trace_of(1, 200, {}, scalars={"loss": loss}))
    assert f is not None and f.evidence["plateau_trend_z"] > 3
    assert f.evidence["rising"] is rising
