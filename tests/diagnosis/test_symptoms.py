"""A loss plateau no gradient finding explains is told what it is: after learning, info;
with tiny steps, a learning rate too low; from the start, look at the task."""

from __future__ import annotations

import numpy as np
from diag_helpers import depth_profile, trace_of

import gradwatch as gw
from gradwatch.trace import Trace

N = 100


def _trace(
    loss: np.ndarray,
    grad_decades: float = 0.0,
    update_ratio: float | None = None,
    between_inputs: float | None = None,
    scalars: dict[str, np.ndarray] | None = None,
) -> Trace:
    """6 layers whose grad_rms rises ``grad_decades`` along depth, with ``loss`` logged; with
    ``update_ratio`` or ``between_inputs`` (act_between_inputs), every layer's on every 5th
    step."""
    metrics = {"grad_rms": np.tile(depth_profile(6, grad_decades), (N, 1))}
    for name, value in (("update_ratio", update_ratio), ("act_between_inputs", between_inputs)):
        if value is not None:
            sampled = np.full((N, 6), np.nan)
            sampled[::5] = value
            metrics[name] = sampled
    return trace_of(6, N, metrics, scalars={"loss": loss, **(scalars or {})})


def _learns_then_flat(stop: int = 30) -> np.ndarray:
    """Falls 3% a step until ``stop``, then flat: a plateau from the 4th window."""
    return 2.3 * 0.97 ** np.minimum(np.arange(N), stop)


def _plateau(diagnosis: list[gw.Finding]) -> gw.Finding:
    (f,) = [f for f in diagnosis if f.rule == "loss_plateau"]
    return f


def test_a_plateau_after_learning_with_healthy_gradients_is_info() -> None:
    """The loss fell 2.3 -> 0.92 by step 30, then stayed: no other finding, so it is info,
    says what it measured, and offers no remedy."""
    f = _plateau(gw.diagnose(_trace(_learns_then_flat())))
    assert f.severity == "info" and f.remedies == ()
    assert f.evidence["unexplained"] is True and f.evidence["start_loss"] == 2.231
    assert f.message.startswith(
        "Loss plateau after learning: from step 30 the loss stayed near 0.9223 (from 2.231 at "
        "the start), and no other rule found a gradient problem"
    )


def test_a_loss_still_falling_slowly_is_not_told_it_has_finished() -> None:
    """Learned fast, then falls steadily by 4% over 70 steps (under the rule's 5%): still
    info, but told it is still learning, not that stopping loses little. A flat plateau with
    the same noise keeps the "learned what this data allows" message."""
    t = np.arange(N)
    noise = 0.002 * np.sin(1.7 * t)
    slow = np.where(t < 30, 2.3 * 0.97**t, 2.3 * 0.97**30 * (1 - 0.04 * (t - 30) / 69)) + noise
    f = _plateau(gw.diagnose(_trace(slow, update_ratio=4e-4)))
    assert f.severity == "info" and f.remedies == ()
    assert f.evidence["still_falling"] is True and f.evidence["plateau_trend_z"] < -3
    assert f.message.startswith("Loss still falling, slowly, after learning: from step 30")
    assert "a median 0.0004 of their norm" in f.message and "loses little" not in f.message
    flat = _plateau(gw.diagnose(_trace(_learns_then_flat() + noise)))
    assert flat.evidence["still_falling"] is False and "loses little" in flat.message


def test_a_plateau_from_the_start_stays_a_warning() -> None:
    """A loss that never improved by 5% is a warning whatever else was found; with no
    gradient finding beside it, it says so and points at what the model is asked to learn,
    without the remedies for a lost gradient."""
    flat = 2.3 + 0.001 * np.sin(np.arange(N))
    f = _plateau(gw.diagnose(_trace(flat, update_ratio=1e-3)))
    assert f.severity == "warning" and "unexplained" not in f.evidence
    assert f.evidence["cause"] == "none_found" and f.remedies == ()
    assert "no rule found a gradient problem" in f.message
    assert "labels it cannot predict" in f.message
    beside = _plateau(gw.diagnose(_trace(flat, grad_decades=5.0)))
    assert "cause" not in beside.evidence and beside.remedies


def test_a_plateau_with_tiny_steps_names_the_learning_rate() -> None:
    """From the start, the weights move a median 1e-5 of their norm per step (healthy is
    ~1e-3): with no gradient finding, the learning rate is the suspect, a warning with
    raise_lr and no structural remedy; at 1e-3 it is not. After learning, small steps may be a model near
    its optimum under SGD: info, as any plateau after learning."""
    loss = 2.3 + 0.001 * np.sin(np.arange(N))
    f = _plateau(gw.diagnose(_trace(loss, update_ratio=1e-5)))
    assert f.severity == "warning" and [h.id for h in f.remedies] == ["raise_lr"]
    assert f.evidence["cause"] == "tiny_steps"
    assert f.evidence["median_update_ratio"] == 1e-5
    assert f.evidence["tiny_update_ratio"] == 1e-4
    assert "each step moves the weights by a median 1e-05 of their norm" in f.message
    assert "the learning rate is likely too low" in f.message
    healthy = _plateau(gw.diagnose(_trace(loss, update_ratio=1e-3)))
    assert healthy.evidence.get("cause") != "tiny_steps"
    learned = _plateau(gw.diagnose(_trace(_learns_then_flat(), update_ratio=1e-5)))
    assert learned.severity == "info" and "cause" not in learned.evidence


def _clipped(coef: float) -> Trace:
    """The tiny-steps plateau above, its gradients clipped by ``coef`` at every step (the
    global norm before the clip 0.46, as on a digits MLP clipped at 1e-3)."""
    loss = 2.3 + 0.001 * np.sin(np.arange(N))
    clip = {"clip_coef": np.full(N, coef), "global_grad_norm": np.full(N, 0.46)}
    return _trace(loss, update_ratio=1e-5, scalars=clip)


def test_a_plateau_with_tiny_steps_under_a_tight_clip_names_the_clip() -> None:
    """A clip that scales every gradient by 0.0022 (max_norm 1e-3 against a norm of 0.46)
    keeps the steps tiny, not the rate: the message says so and names the usual norm (it
    said "the learning rate is likely too low"). A clip that scales them by 0.5 does not."""
    f = _plateau(gw.diagnose(_clipped(0.0022)))
    assert f.severity == "warning" and f.remedies == ()
    assert f.evidence["cause"] == "tight_clip" and f.evidence["clip_coef_median"] == 0.0022
    assert "the gradient clipping scaled every gradient by a median 0.0022" in f.message
    assert "(its median here: 0.46)" in f.message
    assert "learning rate is likely too low" not in f.message
    loose = _plateau(gw.diagnose(_clipped(0.5)))
    assert loose.evidence["cause"] == "tiny_steps"


def test_a_decayed_schedules_small_last_steps_are_not_tiny_steps() -> None:
    """Plateau rows under half the peak learning rate are left out of the step size: a run
    whose rate decays to 1% keeps its healthy-sized steps of the plateau's start."""
    from gradwatch.diagnosis.rules.loss_plateau import plateau_step_size

    ur = np.full((N, 6), np.nan)
    ur[::5] = np.where(np.arange(0, N, 5) < 50, 1e-3, 1e-6)[:, None]
    lr = np.where(np.arange(N) < 50, 1e-3, 1e-5)
    t = trace_of(6, N, {"grad_rms": np.ones((N, 6)), "update_ratio": ur},
                 scalars={"loss": _learns_then_flat(), "optimizer_lr": lr})  # fmt: skip
    size = plateau_step_size(t, 30)
    assert size is not None and size.median == size.most == 1e-3
    assert plateau_step_size(t, 60) is None  # no row near the peak rate left


def test_a_plateau_beside_a_gradient_finding_stays_a_warning() -> None:
    """With the gradient vanishing 5 decades along depth (critical), the plateau is its
    symptom: a warning, as the rule wrote it."""
    diagnosis = gw.diagnose(_trace(_learns_then_flat(), grad_decades=5.0))
    assert [f.rule for f in diagnosis if f.severity == "critical"] == ["vanishing_gradient"]
    f = _plateau(diagnosis)
    assert f.severity == "warning" and f.message.startswith("Loss plateau: from step 30")


def test_only_a_diagnosis_that_ran_every_rule_settles_it() -> None:
    """With a subset of the rules a cause may not have been looked for: the rule's warning."""
    (f,) = gw.diagnose(_trace(_learns_then_flat()), rules=["loss_plateau"])
    assert f.severity == "warning"


def test_a_loss_rising_after_its_best_stays_a_warning_naming_the_step_size() -> None:
    """Learned, then rose steadily by 8% with no gradient finding (GPT-2 at AdamW 0.1 after
    a warm-up ends at the unigram level this way): a warning, not "learned what the data
    allows", naming steps too large or unshuffled data, with a lower rate as its one remedy
    (not the lost-gradient ones)."""
    t = np.arange(N)
    noise = 0.002 * np.sin(1.7 * t)
    best = 2.3 * 0.97**30
    rising = np.where(t < 30, 2.3 * 0.97**t, best * (1 + 0.08 * (t - 30) / 69)) + noise
    f = _plateau(gw.diagnose(_trace(rising, update_ratio=0.02)))
    assert f.severity == "warning" and [r.id for r in f.remedies] == ["lower_lr"]
    assert f.evidence["rising"] is True and f.evidence["cause"] == "rising"
    assert f.message.startswith("Loss rising: from step 30 the loss went 0.9")
    assert "steps too large" in f.message and "a median 0.02 of their norm" in f.message
    # Beside a gradient finding it is that finding's symptom, as before.
    beside = _plateau(gw.diagnose(_trace(rising, grad_decades=5.0)))
    assert "cause" not in beside.evidence and beside.remedies


def test_a_loss_falling_slowly_from_the_start_is_not_sent_to_the_task() -> None:
    """Never 5% better than its best, yet steadily lower, with normal steps and nothing else
    found: the model learns, slowly; the message does not point at labels or the output."""
    t = np.arange(N)
    slow = 2.3 * (1 - 0.04 * t / (N - 1)) + 0.002 * np.sin(1.7 * t)
    f = _plateau(gw.diagnose(_trace(slow, update_ratio=1e-3)))
    assert f.severity == "warning" and f.remedies == ()
    assert f.evidence["cause"] == "slow" and f.evidence["still_falling"] is True
    assert f.message.startswith("Loss falling slowly: from step 0 the loss went 2.29")
    assert "(-" in f.message.split(",")[0]  # the fall is signed, as a rise is (+)
    assert "labels it cannot predict" not in f.message


def test_a_plateau_whose_representation_collapsed_says_so() -> None:
    """The representation the head reads (layer 4 of 6: the last is the head) varies between
    inputs by a median 3% of its variance over the plateau: the prediction barely depends on
    the input, a warning that names the layer and the step size, with a lower rate as its
    one remedy (not the structural ones), after learning or from the start. At 40% it is the
    healthy plateau (info), and beside a gradient finding the other findings explain it."""
    f = _plateau(gw.diagnose(_trace(_learns_then_flat(), between_inputs=0.03)))
    assert f.severity == "warning" and [r.id for r in f.remedies] == ["lower_lr"]
    assert f.evidence["cause"] == "collapsed"
    assert f.evidence["plateau_between_inputs"] == 0.03
    assert f.evidence["between_inputs_layer"] == "L4 fc4"
    assert f.layers == ("fc4",) and f.shown_layers == ("L4 fc4",)  # the layer it is about
    assert f.message.startswith(
        "Loss plateau with a collapsed representation: from step 30 the loss stayed near 0.9223"
    )
    assert "('L4 fc4') is nearly the same for every input: only 3.0% of its variance" in f.message
    flat = 2.3 + 0.001 * np.sin(np.arange(N))
    start = _plateau(gw.diagnose(_trace(flat, between_inputs=0.03)))
    assert start.evidence["cause"] == "collapsed" and start.severity == "warning"
    assert [r.id for r in start.remedies] == ["lower_lr"]
    healthy = _plateau(gw.diagnose(_trace(_learns_then_flat(), between_inputs=0.4)))
    assert healthy.severity == "info" and "cause" not in healthy.evidence
    beside = _plateau(gw.diagnose(_trace(flat, grad_decades=5.0, between_inputs=0.03)))
    assert "cause" not in beside.evidence and beside.remedies


def test_the_head_reads_the_layer_before_it_or_a_tied_heads_final_norm() -> None:
    """read_out_layer: the layer before a final weight layer (the head's logits share the
    label prior), the final norm where the head is tied to the embedding (no layer of its
    own), passing over layers without a measurement; nothing when none has one."""
    from diag_helpers import layers

    from gradwatch.diagnosis.rules.loss_plateau import read_out_layer
    from gradwatch.trace import LayerInfo

    every = np.ones(6, dtype=bool)
    assert read_out_layer(trace_of(6, 3, {}), every) == 4
    assert read_out_layer(trace_of(6, 3, {}), np.array([1, 1, 1, 0, 1, 1], bool)) == 4
    assert read_out_layer(trace_of(6, 3, {}), np.array([1, 1, 1, 1, 0, 1], bool)) == 3
    tied = [*layers(3), LayerInfo(name="ln_f", type="LayerNorm", depth=3, num_params=8)]
    assert tied[-1].role == "norm"
    assert read_out_layer(trace_of(4, 3, {}, layer_infos=tied), np.ones(4, bool)) == 3
    assert read_out_layer(trace_of(1, 3, {}), np.ones(1, bool)) == 0
    assert read_out_layer(trace_of(6, 3, {}), np.zeros(6, bool)) is None
