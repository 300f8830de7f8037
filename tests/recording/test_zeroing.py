"""Gradients never zeroed between optimizer steps: what the watch sees of the ``.grad``
tensors, on real training loops, and the finding it leads to."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.recording.zeroing import PERIOD, ZeroingProbe

STEPS = 5 * PERIOD  # five pairs compared


def _loop(
    zero: Callable[[torch.optim.Optimizer], None] | None,
    *,
    backward_passes: int = 1,
    clip: bool = False,
    first_unused: bool = False,
) -> ZeroingProbe:
    """Train a 2-layer MLP by SGD for ``STEPS`` steps, zeroing with ``zero`` (None: never)
    before the backward passes; the probe observes every step, as the watch does."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    probe = ZeroingProbe([p for p in model.parameters() if p.requires_grad])
    for step in range(STEPS):
        if zero is not None:
            zero(opt)
        for _ in range(backward_passes):
            x = torch.randn(16, 4)
            # A first layer the step leaves unused: only the head gets a gradient.
            out = model[2](torch.randn(16, 8)) if first_unused and step % 2 else model(x)
            out.pow(2).mean().backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            probe.written(list(model.parameters()))  # as the watch's clip observer tells it
        probe.observe(step)
        opt.step()
    return probe


def test_a_loop_that_never_zeroes_its_gradients_is_seen_at_every_pair() -> None:
    probe = _loop(None)
    assert probe.meta() == {"checked": 5, "kept": 5, "first_kept": 1}


@pytest.mark.parametrize(
    "zero",
    [
        lambda opt: opt.zero_grad(),  # set_to_none: a new .grad each step
        lambda opt: opt.zero_grad(set_to_none=False),  # zeroed in place: version +1, +1
    ],
    ids=["set_to_none", "in_place"],
)
def test_a_loop_that_zeroes_is_never_taken_for_one_that_does_not(
    zero: Callable[[torch.optim.Optimizer], None],
) -> None:
    assert _loop(zero).kept == 0
    assert _loop(zero, backward_passes=2).kept == 0  # gradient accumulation within a step
    assert _loop(zero, clip=True).kept == 0


def test_a_parameter_a_step_left_unused_does_not_pass_for_one_never_zeroed() -> None:
    """Zeroed in place, a first layer unused at odd steps moves its version by one alone:
    the head, used at every step, moved by two, so the pair is not counted as kept."""
    probe = _loop(lambda opt: opt.zero_grad(set_to_none=False), first_unused=True)
    assert probe.checked == 5 and probe.kept == 0


def test_a_clipping_the_probe_is_told_of_is_allowed_for() -> None:
    """Never zeroed but norm-clipped: the clipping scales each gradient in place once (version
    +2 a step, as a loop zeroing in place without clipping); told of it, the probe still sees
    every pair kept, and a loop zeroing in place and clipping (+3) none."""
    assert _loop(None, clip=True).meta() == {"checked": 5, "kept": 5, "first_kept": 1}
    assert _loop(lambda opt: opt.zero_grad(set_to_none=False), clip=True).kept == 0


def test_loops_that_write_into_the_gradients_unseen_are_not_judged() -> None:
    """Never zeroed, with two backward passes a step (or a write the probe is not told of):
    the version moves by two, as a loop that zeroes in place moves it; such a pair is not
    counted (a miss, never a false alarm)."""
    assert _loop(None, backward_passes=2).kept == 0
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    probe = ZeroingProbe(list(model.parameters()))
    for step in range(STEPS):
        model(torch.randn(8, 4)).pow(2).mean().backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # not told
        probe.observe(step)
    assert probe.checked == 5 and probe.kept == 0


def test_the_probe_keeps_no_gradient_alive() -> None:
    """A .grad set to None after the probe saw it is freed (the probe holds a weak
    reference), and the next step's new .grad is not the same tensor."""
    model = nn.Linear(2, 1)
    model(torch.randn(3, 2)).sum().backward()
    probe = ZeroingProbe(list(model.parameters()))
    probe.observe(0)
    seen = probe._seen[0]
    assert seen is not None
    model.weight.grad = None
    assert seen[0]() is None
    model.zero_grad()
    model(torch.randn(3, 2)).sum().backward()
    probe.observe(1)
    assert probe.checked == 1 and probe.kept == 0


def _watched(
    zero: bool | str, clip: bool = False, *, scaler: bool = False, fused: bool = False
) -> list[gw.Finding]:
    """A watched loop zeroing with ``zero_grad()`` (``"in_place"``: set_to_none=False) or not
    at all, clipping with ``clip_grad_norm_`` when ``clip``. With ``scaler``: fp16 autocast
    and a ``GradScaler`` (unscaled by ``unscale_`` before the clip, else in its ``step``);
    ``fused``: a fused Adam, which unscales in its own kernel."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = (
        torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        if fused
        else torch.optim.SGD(model.parameters(), lr=1e-3)
    )
    amp = torch.amp.GradScaler("cpu") if scaler else None
    with gw.watch(model, opt, overhead=None, scaler=amp) as w:
        for _ in range(STEPS):
            if zero:
                opt.zero_grad(set_to_none=zero != "in_place")
            with torch.autocast("cpu", dtype=torch.float16, enabled=scaler):
                loss = model(torch.randn(32, 4)).pow(2).mean()
            (loss if amp is None else amp.scale(loss)).backward()
            if clip:
                if amp is not None:
                    amp.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            if amp is None:
                opt.step()
            else:
                amp.step(opt)
                amp.update()
            w.log(loss=loss)
    seen = w.trace.meta["config"]["grad_zeroing"]
    assert seen["checked"] == 5 and seen["kept"] == (0 if zero else 5)
    return list(gw.diagnose(w.trace))


def test_a_watched_loop_without_zero_grad_is_a_critical_finding_naming_the_fix() -> None:
    """Recorded end to end: exploding_gradient names the loop (critical, no remedy of the
    catalogue), and every other finding is told it may be the loop's consequence, without
    remedies. The same loop with ``zero_grad()`` draws no such finding."""
    findings = _watched(zero=False)
    (f,) = [f for f in findings if f.rule == "exploding_gradient"]
    assert f.severity == "critical" and f.remedies == ()
    assert f.evidence["never_zeroed"] == {"pairs_compared": 5, "pairs_not_zeroed": 5}
    assert "never zeroed between optimizer steps" in f.message
    assert "Call optimizer.zero_grad()" in f.message
    for other in findings:
        if other is not f:
            assert other.remedies == () and other.evidence["unzeroed_loop"] is True
    assert gw.prescribe(findings) == []
    assert not [f for f in _watched(zero=True) if f.evidence.get("never_zeroed")]


@pytest.mark.parametrize("zero", [False, True, "in_place"])
def test_a_watched_loop_that_clips_is_judged_through_the_clip_observer(zero: bool | str) -> None:
    """With ``clip_grad_norm_`` in the loop (observed by the watch): never zeroed is named,
    with the clipping in the message; zeroed either way is not."""
    findings = _watched(zero, clip=True)
    never = [f for f in findings if f.evidence.get("never_zeroed")]
    if zero:
        assert never == []
    else:
        (f,) = never
        assert f.evidence["clipped"] is True
        assert "Clipping bounds the size of each step" in f.message


@pytest.mark.parametrize("fused", [False, True], ids=["sgd", "fused_adam"])
@pytest.mark.parametrize("clip", [False, True], ids=["no_clip", "unscale_clip"])
@pytest.mark.parametrize("zero", [False, True, "in_place"])
def test_a_gradscaler_loop_is_judged_as_any_other(
    zero: bool | str, clip: bool, fused: bool
) -> None:
    """Under fp16 autocast with a GradScaler: its unscaling (``unscale_`` before a clip, or in
    its ``step``; a fused optimizer's own kernel) does not move the gradients' version
    counters (``_amp_foreach_non_finite_check_and_unscale_`` is not an autograd-visible
    in-place op), so a never-zeroed loop is named and a zeroing one, either way, is not."""
    findings = _watched(zero, clip, scaler=True, fused=fused)
    never = [f for f in findings if f.evidence.get("never_zeroed")]
    assert len(never) == (0 if zero else 1)


@pytest.mark.parametrize(
    ("checked", "kept", "fires"),
    [(5, 5, True), (10, 9, True), (10, 8, False), (2, 2, False), (0, 0, False)],
)
def test_the_finding_needs_most_pairs_and_three_of_them(
    checked: int, kept: int, fires: bool
) -> None:
    """unzeroed_share 0.9 of the pairs compared, and min_unzeroed_steps 3 pairs: a loop that
    zeroes every other step, or two pairs of a start-up quirk, is not a loop that forgets."""
    import numpy as np

    from gradwatch.diagnosis import RULES, Thresholds
    from gradwatch.trace import Trace

    trace = Trace.from_arrays(["fc"], np.arange(40), {"grad_rms": np.ones((40, 1))})
    trace.meta["config"] = {
        "grad_zeroing": {"checked": checked, "kept": kept, "first_kept": 1 if kept else None}
    }
    f = RULES["exploding_gradient"](trace, Thresholds().exploding_gradient)
    assert (f is not None and "never_zeroed" in f.evidence) is fires
    if fires:
        assert f is not None and f.steps == (1, 39)


def test_a_clip_reported_through_observe_clip_is_not_allowed_for() -> None:
    """A clipper reporting through ``w.observe_clip`` may skip its write below ``max_norm``:
    a loop zeroing in place whose clipper reported but wrote nothing moves the version by two,
    as a never-zeroed loop with a clip would; allowing for the report would take it for one
    that never zeroes. It is not told: no pair kept."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    with gw.watch(model, opt, overhead=None) as w:
        for _ in range(STEPS):
            opt.zero_grad(set_to_none=False)
            model(torch.randn(32, 4)).pow(2).mean().backward()
            w.observe_clip(model.parameters(), torch.tensor(0.5), 1.0)  # under max_norm
            opt.step()
    assert w.trace.meta["config"]["grad_zeroing"]["kept"] == 0
