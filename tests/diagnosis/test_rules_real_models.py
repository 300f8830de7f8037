"""The rules on hand-built traces whose numbers mirror real runs.

Issue 12's four false alarms (a converged BERT classifier, PyTorch's LSTM LM recipe,
PyTorch's default initialisation of a residual and a plain MLP, non-ReLU units called dead)
and one miss (a blow-up in the first steps of GPT-2 at lr 0.05) stay fixed, and each broken
counterpart still fires. So does the misdiagnosis of Hugging Face EfficientNet (conv ->
BatchNorm -> SiLU nets, norms starting at gain 0.02) found by the architecture sweep of
2026-11-30.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from diag_helpers import depth_profile, layers, trace_of

import gradwatch as gw
from gradwatch.diagnosis import RULES, Thresholds
from gradwatch.diagnosis.finding import Finding
from gradwatch.trace import LayerInfo, Trace

TH = Thresholds()


def run(rule: str, trace: Trace, **overrides: float) -> Finding | None:
    th = Thresholds.from_overrides({rule: overrides}) if overrides else TH
    return RULES[rule](trace, getattr(th, rule))


# ---------------------------------------------------------------- vanishing: a finished model
def _converging_classifier(contrast_while_learning: float, n: int = 100) -> Trace:
    """Loss 0.69 -> 0.001 by step 40 (tiny BERT); after that the depth contrast reaches 3
    decades and the first layer sits below 1e-7, as a confident model's gradients do."""
    steps = np.arange(n)
    loss = np.maximum(0.69 * np.exp(-steps / 6.0), 1e-3)  # 0.069 (a tenth) at step ~14
    g = np.empty((n, 6))
    g[:40] = depth_profile(6, contrast_while_learning, base=1e-3)
    g[40:] = depth_profile(6, 3.0, base=1e-8)  # first layer 1e-8 < 1e-7
    return trace_of(6, n, {"grad_rms": g}, scalars={"loss": loss})


def test_vanishing_quiet_on_a_model_that_finished_learning() -> None:
    """A contrast and floor reached only after the loss fell to a tenth of its start are not
    vanishing: the model is confident, so every gradient is small."""
    assert run("vanishing_gradient", _converging_classifier(0.5)) is None


def test_vanishing_still_fires_while_learning() -> None:
    """The same run with a 3-decade contrast while the loss was still falling fires, and the
    evidence says where the model finished."""
    f = run("vanishing_gradient", _converging_classifier(3.0))
    assert f is not None and f.severity == "warning"
    assert f.evidence["max_contrast_decades"] == pytest.approx(3.0, abs=1e-4)
    # start = median of the first 3 losses = 0.69 e^(-1/6) = 0.584; the window of steps
    # 10-19 has median 0.69 e^(-14.5/6) = 0.061 > 0.0584, the next one 0.0114.
    assert f.evidence["finished_at_step"] == 20
    assert "below_floor" not in f.evidence


@pytest.mark.parametrize(
    ("in_branch", "norm", "warmup", "offered"),
    [(4, "LayerNorm", 0, "the first steps ran at the peak rate"),
     (4, "LlamaRMSNorm", 20, "rose to its peak over its first 18 steps: a longer warm-up"),
     (4, "BatchNorm1d", 0, None),
     (2, "LayerNorm", 0, None)],
)  # fmt: skip
def test_vanishing_in_a_transformer_offers_a_warm_up(
    in_branch: int, norm: str, warmup: int, offered: str | None
) -> None:
    """A post-LN transformer (most layers in a residual branch, LayerNorm or RMSNorm layers)
    whose first steps ran at the peak rate: lr_warmup comes first; one that warmed up is
    offered a longer warm-up (the real corpus's post-LN LM learns with 50 warm-up steps of
    150, not with 15). Not for a BatchNorm ResNet, nor a net without residual connections (a
    deep sigmoid MLP keeps the structural remedies)."""
    n = 100
    infos = [
        LayerInfo(
            f"blocks.{i}.linear", "Linear", i, 272, {"weight": [16, 16], "bias": [16]},
            branch=f"blocks.{i}" if i < in_branch else None,
        )
        for i in range(5)
    ] + [LayerInfo("blocks.0.norm", norm, 5, 32, {"weight": [16], "bias": [16]})]  # fmt: skip
    lr = np.full(n, 1e-2)
    lr[:warmup] = 1e-2 * (np.arange(warmup) + 1) / max(warmup, 1)
    g = np.broadcast_to(np.append(depth_profile(5, 3.0), 1e-3), (n, 6)).copy()
    t = trace_of(
        6, n, {"grad_rms": g}, scalars={"loss": np.full(n, 3.0), "optimizer_lr": lr},
        layer_infos=infos,
    )  # fmt: skip
    f = run("vanishing_gradient", t)
    assert f is not None
    if offered is None:
        assert "lr_warmup" not in [h.id for h in f.remedies]
    else:
        assert f.remedies[0].id == "lr_warmup" and offered in f.remedies[0].reason


def test_vanishing_judges_every_row_without_a_loss() -> None:
    """With no logged loss (or finished_loss_fraction 0) the old judgement holds: critical."""
    t = _converging_classifier(0.5)
    bare = trace_of(6, 100, {"grad_rms": t.matrix("grad_rms")})
    assert (f := run("vanishing_gradient", bare)) is not None and f.severity == "critical"
    f = run("vanishing_gradient", t, finished_loss_fraction=0.0)
    assert f is not None and f.severity == "critical"


def test_vanishing_judges_a_relapse_after_finishing() -> None:
    """Windows where the loss climbed back above a tenth of its start count again."""
    t = _converging_classifier(0.5)
    loss = t.scalar("loss").copy()
    loss[70:] = 0.69  # diverged back to chance
    relapsed = trace_of(6, 100, {"grad_rms": t.matrix("grad_rms")}, scalars={"loss": loss})
    f = run("vanishing_gradient", relapsed)
    assert f is not None and f.severity == "critical"
    assert f.steps is not None and f.steps[0] >= 70


def test_vanishing_that_resolved_is_info() -> None:
    """A 3-decade contrast in the first 30 steps (a fresh transformer's head-heavy gradient)
    that the model grows out of is reported as history (info), naming when it resolved."""
    g = np.tile(depth_profile(6, 0.3), (100, 1))
    g[:30] = depth_profile(6, 3.0)
    f = run("vanishing_gradient", trace_of(6, 100, {"grad_rms": g}))
    assert f is not None and f.severity == "info"
    assert f.evidence["resolved_by_step"] == 30
    assert f.steps == (0, 29)
    assert f.message.startswith("Vanishing gradient early on, since resolved:")
    late = g.copy()  # the trace made its array read-only
    late[:80] = depth_profile(6, 3.0)  # over most of the run: not "early on"
    f = run("vanishing_gradient", trace_of(6, 100, {"grad_rms": late}))
    assert f is not None and f.severity == "info"
    assert f.message.startswith("Vanishing gradient until step 79, since resolved:")
    g = g.copy()
    g[-10:] = depth_profile(6, 3.0)  # back at the end: current again
    f = run("vanishing_gradient", trace_of(6, 100, {"grad_rms": g}))
    assert f is not None and f.severity == "warning"


def test_exploding_depth_is_judged_while_learning() -> None:
    """A reversed contrast that appears only after the loss collapsed is not exploding."""
    n = 60
    loss = np.maximum(2.3 * np.exp(-np.arange(n) / 4.0), 1e-3)
    g = np.tile(depth_profile(6, 0.0), (n, 1))
    g[30:] = depth_profile(6, -3.0)
    assert (
        run("exploding_gradient", trace_of(6, n, {"grad_rms": g}, scalars={"loss": loss})) is None
    )
    assert run("exploding_gradient", trace_of(6, n, {"grad_rms": g})) is not None


# ---------------------------------------------------------------- unstable_updates: the loss
_LM = [
    LayerInfo("encoder", "Embedding", 0, 100),
    LayerInfo("rnn", "LSTM", 1, 100, recurrent=True),
    LayerInfo("decoder", "Linear", 2, 100),
]


def _lm_trace(ratio: float, loss: np.ndarray, **kw: object) -> Trace:
    n = len(loss)
    ur = np.full((n, 3), np.nan)
    ur[::10] = [0.02, 0.05, ratio]  # sampled every 10 steps
    return Trace.from_arrays(
        _LM,
        np.arange(n),
        {"update_ratio": ur},
        scalars={"loss": loss, **kw.pop("scalars", {})},
        **kw,
    )


def _steady_lm_loss(n: int = 300, seed: int = 0) -> np.ndarray:
    """Word-LM cross-entropy falling 6.9 -> ~5.0 with batch noise (PyTorch's recipe)."""
    rng = np.random.default_rng(seed)
    return 5.0 + 1.9 * np.exp(-np.arange(n) / 60.0) + rng.normal(0, 0.05, n)


def _diverging_lm_loss(n: int = 300, seed: int = 0) -> np.ndarray:
    """The tanh RNN under the same recipe: a brief fall, then the loss climbs and swings."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (
        6.9
        - 0.6 * np.exp(-((t - 30) ** 2) / 400.0)
        + 0.004 * t
        + 0.4 * np.sin(t / 7.0) ** 2
        + (rng.normal(0, 0.05, n))
    )


@pytest.mark.parametrize(
    "clip",
    [{"meta": {"clipping": {"max_norm": 0.25}}}, {"scalars": {"clip_coef": np.full(300, 0.3)}}, {}],
)
def test_unstable_quiet_when_the_loss_thrives_on_large_updates(clip: dict[str, object]) -> None:
    """Decoder update ratio 0.22 under a steadily falling loss is productive, clipped or not."""
    assert run("unstable_updates", _lm_trace(0.22, _steady_lm_loss(), **clip)) is None


@pytest.mark.parametrize("clip", [{"meta": {"clipping": {"max_norm": 0.25}}}, {}])
def test_unstable_fires_when_the_loss_does_not_respond(clip: dict[str, object]) -> None:
    """Ratio 0.28 with the loss not falling (the diverging tanh RNN) fires, clipping or not."""
    f = run("unstable_updates", _lm_trace(0.28, _diverging_lm_loss(), **clip))
    assert f is not None and f.severity == "warning"
    assert f.layers == ("decoder",)
    assert f.evidence["loss_response"]["progress"] < TH.unstable_updates.min_progress
    assert f.evidence["clipping"] == bool(clip)
    assert ("clip_norm" in [r.id for r in f.remedies]) != bool(clip)


def test_unstable_oscillation_is_overshooting_unless_clipped() -> None:
    """A loss that falls but gives back most of its progress in swings overshoots; with
    clipping each step is bounded, so the progress is enough."""
    t = np.arange(300)
    loss = 2.3 - 1.2 * (1 - np.exp(-t / 50.0)) + 0.9 * (np.sin(t / 15.0) > 0.7)
    f = run("unstable_updates", _lm_trace(0.3, loss))
    assert f is not None
    assert f.evidence["loss_response"]["max_relapse_seen"] > TH.unstable_updates.max_relapse
    clipped = _lm_trace(0.3, loss, scalars={"clip_coef": np.full(300, 0.5)})
    assert run("unstable_updates", clipped) is None


def test_unstable_a_loss_that_rose_before_any_progress_is_said_so() -> None:
    """A loss that rises before it has fallen by min_progress has given back no progress: it
    is measured against that floor, and the message says how high it rose (it read "gave
    back 3.8x the progress made before step 0" on a healthy HF ModernBERT under AdamW 1e-3
    without warm-up: 0.62 at the start, 1.2 at step 3, a median of 0.87 over steps 0-9). A
    loss that falls by half first and then rises gives back its progress, as before."""
    t = np.arange(300)
    loss = np.where(t < 3, 1.0, np.where(t < 10, 1.4, 1.2 * np.exp(-(t - 10) / 40.0) + 0.2))
    f = run("unstable_updates", _lm_trace(0.3, loss))
    assert f is not None
    assert f.evidence["loss_response"]["relapse_unearned"] is True
    assert "gave back" not in f.message
    assert "the loss rose before it had fallen 10% (its median over steps 0-9 1.4x its start)" in (
        f.message
    )
    fell_first = np.where((t >= 30) & (t < 40), 1.0, np.exp(-t / 20.0) * 0.5 + 0.5)
    f = run("unstable_updates", _lm_trace(0.3, fell_first))
    assert f is not None
    assert f.evidence["loss_response"]["relapse_unearned"] is False
    assert "the loss gave back 1.1x the progress made before step 30" in f.message


def test_unstable_critical_ratio_fires_whatever_the_loss() -> None:
    """Above SageMaker's large_threshold (10) the loss's response does not matter."""
    f = run("unstable_updates", _lm_trace(11.0, _steady_lm_loss()))
    assert f is not None and f.severity == "critical"


# ---------------------------------------------------------------- early blow-up (GPT-2, lr 0.05)
def _gpt2_blowup(
    update0: float = 7.0, spike: float = 24.0, jump: float = 50.0, lr: np.ndarray | None = None
) -> Trace:
    """Update ratio `update0` at step 0 (then 0.01), loss 10.8 -> `spike` at step 4, then
    back to ~7; global grad norm 1 -> `jump` at steps 2-4. Sampled every 10 steps; the
    optimizer's learning rate `lr` per step when given."""
    n = 100
    ur = np.full((n, 4), np.nan)
    ur[::10] = 0.01
    ur[0, 2] = update0
    loss = 7.0 + 3.8 * np.exp(-np.arange(n) / 30.0)
    loss[2:6] = np.array([14.0, 20.0, 24.0, 15.0]) * spike / 24.0
    gnorm = np.ones(n)
    gnorm[2:5] = jump
    scalars = {"loss": loss, "global_grad_norm": gnorm}
    return trace_of(
        4,
        n,
        {"update_ratio": ur},
        scalars=scalars if lr is None else {**scalars, "optimizer_lr": lr},
    )


def test_early_blowup_is_named_by_unstable_updates() -> None:
    """One huge update ratio at step 0 followed by a loss spike to 2.2x its start fires."""
    f = run("unstable_updates", _gpt2_blowup())
    assert f is not None and f.severity == "warning"
    assert f.layers == ("fc2",)
    assert f.evidence["high_update_ratio"] == {"fc2": 7.0}
    assert f.evidence["loss_response"]["early_spike_over_start"] == pytest.approx(24.0 / 10.8)
    assert f.steps == (0, 10)  # the sampled rows within the first 20 steps


@pytest.mark.parametrize("warmup", [0, 20])
def test_an_unstable_start_names_the_learning_rate_and_a_warm_up(warmup: int) -> None:
    """With the optimizer's rate recorded (5e-3 from step 0, as the blow-up above), the
    finding quotes it and names a warm-up; a run that warmed up (the rate
    rising over 20 steps) is told the rate and its share of the peak instead."""
    lr = np.full(100, 5e-3)
    lr[:warmup] = 5e-3 * (np.arange(warmup) + 1) / max(warmup, 1)
    f = run("unstable_updates", _gpt2_blowup(lr=lr))
    assert f is not None
    if warmup:
        assert f.evidence["learning_rate"] == {"at_step": 0, "value": 2.5e-4, "peak": 5e-3}
        assert f.message.endswith(" The learning rate was 0.00025 at step 0 (5% of its peak).")
    else:
        assert f.evidence["learning_rate"] == {
            "at_step": 0, "value": 5e-3, "peak": 5e-3, "warm_up": False
        }  # fmt: skip
        assert f.message.endswith(
            " The learning rate was 0.005 from step 0, its peak from the start: a warm-up (the "
            "rate raised over the first steps) keeps the first steps small."
        )
    plain = run("unstable_updates", _gpt2_blowup())
    assert plain is not None and "learning_rate" not in plain.evidence


@pytest.mark.parametrize("warmup", [0, 20])
def test_an_unstable_cold_start_prescribes_a_warm_up(warmup: int) -> None:
    """The start ran at its peak rate: lr_warmup is offered before clipping, after lower_lr
    because this start's step outweighs the weights (7x; a smaller one keeps the warm-up
    first: test_rate_causes.py); a run that warmed up (or one whose rate was not recorded)
    is not offered one."""
    lr = np.full(100, 5e-3)
    lr[:warmup] = 5e-3 * (np.arange(warmup) + 1) / max(warmup, 1)
    f = run("unstable_updates", _gpt2_blowup(lr=lr))
    assert f is not None
    ids = [h.id for h in f.remedies]
    if warmup:
        assert "lr_warmup" not in ids
    else:
        assert ids[:2] == ["lower_lr", "lr_warmup"] and "clip_norm" in ids
    plain = run("unstable_updates", _gpt2_blowup())
    assert plain is not None and "lr_warmup" not in [h.id for h in plain.remedies]


def test_early_large_ratio_without_a_loss_spike_is_one_odd_sample() -> None:
    """A step-0 ratio above 0.1 but under the weights' own norm (the LSTM LM recipe's decoder
    shows 0.64) with a loss that just falls stays one odd sample: quiet."""
    assert run("unstable_updates", _gpt2_blowup(update0=0.64, spike=9.0)) is None


def test_a_step_larger_than_the_weights_fires_whatever_the_loss() -> None:
    """GPT-2 under AdamW lr 0.1: ratios 5-10 at step 0 only, then ~0.05, and a loss that
    falls 5.4 -> 3.2 (to the unigram level, no spike): the first step erased the init."""
    n = 200
    ur = np.full((n, 4), np.nan)
    ur[::10] = 0.05
    ur[0] = [5.0, 5.1, 10.04, 9.9]
    loss = 3.2 + 2.2 * np.exp(-np.arange(n) / 8.0)
    f = run("unstable_updates", trace_of(4, n, {"update_ratio": ur}, scalars={"loss": loss}))
    assert f is not None and f.severity == "critical"  # 10.04 > SageMaker's 10
    assert list(f.evidence["erased_at_start"]) == ["fc2", "fc3", "fc1", "fc0"]
    assert f.evidence["blocks_over_warn_ratio"] == 0
    assert "in the first steps, one step changed" in f.message
    assert f.steps == (0, 10)
    ur = ur.copy()  # the trace made its array read-only
    ur[0] = [0.9, 0.9, 0.9, 0.9]  # under the weights' norm: one odd sample
    assert (
        run("unstable_updates", trace_of(4, n, {"update_ratio": ur}, scalars={"loss": loss}))
        is None
    )


def test_early_blowup_is_named_by_exploding_gradient() -> None:
    """A 50x global-norm jump in the first steps with the loss spike is a warning; without
    the loss spike it is one hard batch (info)."""
    f = run("exploding_gradient", _gpt2_blowup())
    assert f is not None and f.severity == "warning"
    early = f.evidence["early_spikes"]
    # step 4: 50 over the median of (1, 1, 50, 50) is only 7x
    assert early["steps"] == [2, 3] and early["loss_spiked"] is True
    assert early["max_ratio_to_earlier_median"] == pytest.approx(50.0)
    quiet = run("exploding_gradient", _gpt2_blowup(spike=9.0))
    assert quiet is not None and quiet.severity == "info"
    assert run("exploding_gradient", _gpt2_blowup(jump=5.0)) is None


# ---------------------------------------------------------------- poor_initialization: defaults
_DEFAULT_OVER_HE = 1.0 / math.sqrt(6.0)  # kaiming_uniform(a=sqrt(5)) std / He std = 0.41


def _default_weight_norm(width: int, n: int) -> np.ndarray:
    """weight_norm of ``n`` width x width Linear layers at PyTorch's default init."""
    std = _DEFAULT_OVER_HE * math.sqrt(2.0 / width)
    return np.full(n, std * width)


def _residual_mlp(blocks: int = 12, width: int = 16) -> list[LayerInfo]:
    """A pre-LN residual MLP: per block a LayerNorm and a Linear followed by ReLU."""
    infos = []
    for b in range(blocks):
        infos.append(LayerInfo(f"b{b}.norm", "LayerNorm", 2 * b, 2 * width, {"weight": [width]}))
        infos.append(
            LayerInfo(
                f"b{b}.fc", "Linear", 2 * b + 1, width * width, {"weight": [width, width]}, "ReLU"
            )
        )
    return infos


def test_poor_init_quiet_on_a_default_residual_mlp() -> None:
    """12 default-init residual blocks compound 0.41^12 in weights, but the measured
    activations and backward gradient keep their scale through depth: no finding."""
    infos = _residual_mlp()
    n = len(infos)
    wn = np.tile(_default_weight_norm(16, 1), n)
    metrics = {
        "weight_norm": wn,
        "act_std": np.full(n, 0.4),  # every branch sees LayerNorm'd input
        "out_grad_norm": np.full(n, 1e-2),  # the residual stream carries the gradient
    }
    assert run("poor_initialization", trace_of(n, 5, metrics, layer_infos=infos)) is None


@pytest.mark.parametrize("normalised", [True, False])
def test_poor_init_leaves_out_a_layer_whose_activation_feeds_a_norm(normalised: bool) -> None:
    """HF ModernBERT's classifier head is dense -> GELU -> LayerNorm, its dense at std
    0.02 / sqrt(2 x layers): its output std starts at 0.037, and it trains (no warm-up
    needed for that). The norm resets the forward scale and divides the backward gradient
    by it, so the head's scale cancels out: no finding. The same head without the norm
    passes 0.037 on, and fires."""
    dense = LayerInfo("head.dense", "Linear", 0, 64 * 64, {"weight": [64, 64]}, "GELU")
    norm = LayerInfo("head.norm", "LayerNorm", 1, 64, {"weight": [64]})
    out = LayerInfo("classifier", "Linear", 2, 2 * 64, {"weight": [2, 64]})
    infos = [dense, norm, out] if normalised else [dense, dataclasses.replace(out, depth=1)]
    std = np.array([0.037, 1.0, 1.0] if normalised else [0.037, 1.0])
    f = run("poor_initialization", trace_of(len(infos), 5, {"act_std": std}, layer_infos=infos))
    if normalised:
        assert f is None
    else:
        assert f is not None and f.layers == ("head.dense",)


@pytest.mark.parametrize(
    ("start", "end", "severity"),
    [(2.3, 0.5, None), (4.0, 2.0, None), (8.2, 1.99, "warning"), (8.2, 0.5, "info")],
)
def test_poor_init_names_logits_that_start_too_large(
    start: float, end: float, severity: str | None
) -> None:
    """A cross-entropy over 10 classes starting at 8.2, 3.6x log(10) (HF DeiT built with
    initializer_range 1.0; its default starts at 2.29): the logits start too large, and the
    output layer is named with its std. Falling to 1.99 is no recovery from that (the
    default reaches 0.85); under half of log(10) it is. At twice log(10) or under, nothing."""
    steps = 60
    loss = np.concatenate([np.full(10, start), np.linspace(start, end, 40), np.full(10, end)])
    infos = [
        LayerInfo(f"fc{i}", "Linear", i, 272, {"weight": [16, 16]}, act)
        for i, act in enumerate(["ReLU", "ReLU", None])
    ]
    std = np.array([0.6, 0.6, 5.7])  # the hidden layers' ReLU outputs, then the logits
    t = trace_of(3, steps, {"act_std": std}, scalars={"loss": loss}, layer_infos=infos)
    t.meta["config"] = {"loss_graph": {"kind": "cross_entropy", "classes": 10, "multiple": 1.0}}
    f = run("poor_initialization", t)
    if severity is None:
        assert f is None
        return
    assert f is not None and f.evidence["loss_start_over_untrained"] == pytest.approx(
        start / math.log(10), rel=1e-3
    )
    assert f.layers[0] == "fc2"
    assert "the output logits start too large (those of 'L2 fc2' at std 5.7)" in f.message
    assert [h.id for h in f.remedies][:2] == ["init_xavier", "init_he"]
    assert f.evidence["loss_improving"] is (severity == "info")
    (settled,) = gw.diagnose(t)  # alone, a recovered poor start is told so as an info
    assert settled.rule == "poor_initialization" and settled.severity == severity
    # A loss with another term starts elsewhere: nothing said; a loss logged as 8x its mean
    # (a sum over 8 examples) starts 8x higher: the same is said in its units.
    t.meta["config"]["loss_graph"]["multiple"] = None
    assert run("poor_initialization", t) is None
    t.meta["config"]["loss_graph"]["multiple"] = 8.0
    assert run("poor_initialization", t) is None
    summed = trace_of(3, steps, {"act_std": std}, scalars={"loss": loss * 8}, layer_infos=infos)
    summed.meta["config"] = {"loss_graph": {"kind": "cross_entropy", "classes": 10}}
    summed.meta["config"]["loss_graph"]["multiple"] = 8.0
    f8 = run("poor_initialization", summed)
    assert f8 is not None and f8.evidence["loss_start_over_untrained"] == pytest.approx(
        start / math.log(10), rel=1e-3
    )
    assert f8.evidence["loss_improving"] is (severity == "info")
    assert "times 8 (the logged loss is that multiple of its mean)" in f8.message


def test_poor_init_quiet_on_a_default_plain_mlp() -> None:
    """A 3-layer ReLU MLP at the default init whose activations keep a usable scale: no
    warning (only an info finding when no profile was recorded to check the weights by)."""
    wn = _default_weight_norm(16, 3)
    measured = {"weight_norm": wn, "act_std": np.array([0.55, 0.32, 1.0])}
    f = run("poor_initialization", trace_of(3, 5, measured))
    assert f is None or f.severity == "info"
    f = run("poor_initialization", trace_of(3, 5, {"weight_norm": wn}))
    assert f is not None and f.severity == "info"
    assert f.evidence["measured_profile"] is False


def test_poor_init_fires_when_the_measured_signal_collapses() -> None:
    """A deep plain net at the default init whose activation std falls 0.58x per layer and
    whose backward gradient falls with it is a warning, naming the mis-scaled layers."""
    n = 12
    metrics = {
        "weight_norm": _default_weight_norm(16, n),
        "act_std": 0.58 ** np.arange(1, n + 1),
        "out_grad_norm": 0.58 ** (n - 1 - np.arange(n)),
    }
    f = run("poor_initialization", trace_of(n, 5, metrics))
    assert f is not None and f.severity == "warning"
    assert f.evidence["backward_gain_through_depth"] == pytest.approx(0.58 ** (n - 1), rel=1e-3)
    assert f.evidence["compound_factor"] == pytest.approx(_DEFAULT_OVER_HE**n, rel=1e-3)


# ---------------------------------------------------------------- dead_units: only ReLU
@pytest.mark.parametrize("act", ["LeakyReLU", "ELU", "SELU", "GELU", "SiLU", "Hardtanh", None])
def test_dead_units_quiet_for_units_with_a_gradient(act: str | None) -> None:
    """Units whose derivative is not 0 where they output <= 0 (or unknown ones) are not dead."""
    t = trace_of(3, 20, {"act_dead": np.array([0.1, 0.95, 0.1])}, activation=act)
    assert run("dead_units", t) is None


@pytest.mark.parametrize("act", ["ReLU", "ReLU6", "relu"])
def test_dead_units_fire_for_relu_and_relu6(act: str) -> None:
    """ReLU and ReLU6 units that never fire are dead, and the message names the activation."""
    f = run("dead_units", trace_of(3, 20, {"act_dead": np.array([0.1, 0.95, 0.1])}, activation=act))
    assert f is not None and f.layers == ("fc1",)
    assert act in f.message and f.evidence["activation"] == act
    assert "layer 'L1 fc1'" in f.message  # people read the label, machines f.layers


@pytest.mark.parametrize("how", ["act_mean", "nonfinite", "inf_loss"])
def test_dead_units_leave_nonfinite_steps_to_the_nonfinite_rule(how: str) -> None:
    """After a blow-up the NaN outputs read as 'not positive' (act_dead 1): not dead units."""
    n = 40
    dead = np.full((n, 3), 0.05)
    dead[20:] = 1.0  # NaN outputs from step 20
    mean = np.full((n, 3), 0.3)
    std = np.full((n, 3), 0.5)
    metrics = {"act_dead": dead, "act_mean": mean, "act_std": std}
    scalars = None
    if how == "act_mean":
        mean[20:] = np.nan
        std[20:] = np.nan
    elif how == "nonfinite":
        nf = np.zeros((n, 3))
        nf[20:] = 5
        metrics["nonfinite"] = nf
    else:
        loss = np.full(n, 1.0)
        loss[20:] = np.inf
        scalars = {"loss": loss}
    t = trace_of(3, n, metrics, scalars=scalars)
    assert run("dead_units", t) is None
    # The same act_dead with finite outputs is dead ReLUs.
    assert run("dead_units", trace_of(3, n, {"act_dead": dead, "act_mean": np.full((n, 3), 0.0)}))


# ---------------------------------------------------------------- unstable: a LayerScale
def _layer_scale_trace(init_rms: float, n: int = 200) -> Trace:
    """A ConvNeXt-like run under Adam: layer 0 is a gain grown from ``init_rms`` by 1e-3 per
    element a step, to ~0.1 (its ratio 1e-3 / rms: 1000x at step 0 when init_rms is 1e-6,
    then ~1/k); the other layers move 1e-3 of their norm a step; the loss falls 2.3 -> 0.3."""
    infos = layers(5)
    size = infos[0].num_params
    rms = np.minimum(init_rms + 1e-3 * np.arange(n), 0.1)
    wn = np.ones((n, 5))
    wn[:, 0] = rms * np.sqrt(size)
    ratio = np.full((n, 5), 1e-3)
    ratio[:, 0] = np.where(np.arange(n) < 100, 1e-3 / rms, 1e-4)
    loss = 0.3 + 2.0 * np.exp(-np.arange(n) / 40.0)
    return trace_of(
        5, n, {"update_ratio": ratio, "weight_norm": wn}, scalars={"loss": loss}, layer_infos=infos
    )


def test_unstable_judges_a_layer_grown_from_zero_by_the_scale_it_reaches() -> None:
    """ConvNeXt's LayerScale (init 1e-6) under AdamW: a step of 1000x its own norm is growth,
    judged over the norm the layer grows into, and draws nothing; the same steps on a layer
    that starts at an RMS of 2e-4 (above the 1e-4 floor) erase its initialisation."""
    assert run("unstable_updates", _layer_scale_trace(1e-6)) is None
    assert run("unstable_updates", _layer_scale_trace(0.9e-4)) is None
    f = run("unstable_updates", _layer_scale_trace(2e-4))
    assert f is not None and f.layers[0] == "fc0"
    assert f.evidence["erased_at_start"] == {"fc0": pytest.approx(5.0)}
    assert "grown_from_zero" not in f.evidence


def _zero_started_trace(walk: bool, n: int = 60) -> Trace:
    """LoRA's B under Adam on a task with nothing left to learn (loss flat near 1.4): layer
    0 starts at zero and moves 1e-3 per element a step. As a random walk (``walk``) its norm
    after k steps is sqrt(k) steps, its ratio 1/sqrt(k) (0.13 at step 60: measured on peft
    r=8 over a pretrained Llama); steps that overshoot and undo each other leave its norm at
    ~one step, its ratio near 1. The other layers move 1e-3 of their norm a step."""
    infos = layers(5)
    size = infos[0].num_params
    k = np.arange(n, dtype=np.float64)
    step = 1e-3 * np.sqrt(size)  # the norm of one step
    wn = np.ones((n, 5))
    wn[:, 0] = step * (np.sqrt(k) if walk else np.minimum(k, 1.0))
    ratio = np.full((n, 5), 1e-3)
    with np.errstate(divide="ignore"):
        ratio[:, 0] = step / wn[:, 0]
    loss = 1.4 + 0.05 * np.sin(k)
    return trace_of(
        5, n, {"update_ratio": ratio, "weight_norm": wn}, scalars={"loss": loss}, layer_infos=infos
    )


def test_unstable_reads_a_zero_started_layers_random_walk_as_growth() -> None:
    """A layer that starts at zero and grows as a random walk moves 1/sqrt(k) of its norm at
    step k whatever the rate: 0.13 at step 60, over warn_ratio, with a loss that has nothing
    left to give, drew a warning (LoRA's B in a short fine-tune); it is growth, not overshoot.
    The same steps undoing each other (the norm stuck at one step) still fire."""
    assert run("unstable_updates", _zero_started_trace(walk=True)) is None
    # Without the walk's allowance the grown-scale reading alone fires (the old behaviour).
    f = run("unstable_updates", _zero_started_trace(walk=True), zero_walk_factor=0.0)
    assert f is not None and f.layers == ("fc0",)
    f = run("unstable_updates", _zero_started_trace(walk=False))
    assert f is not None and f.severity == "warning" and f.layers == ("fc0",)
    assert f.evidence["grown_from_zero"] == {"fc0": 0.0}


# ---------------------------------------------------------------- thresholds
def test_new_thresholds_are_validated() -> None:
    """Row counts of the new thresholds must be >= 1."""
    with pytest.raises(ValueError, match="early_rows"):
        Thresholds.from_overrides({"unstable_updates.early_rows": 0})
    with pytest.raises(ValueError, match="loss_window"):
        Thresholds.from_overrides({"unstable_updates.loss_window": 0})
    with pytest.raises(ValueError, match="erase_ratio"):
        Thresholds.from_overrides({"unstable_updates.erase_ratio": -1.0})
    assert layers(1)[0].activation == "ReLU"


def test_depth_comparisons_skip_norm_layers() -> None:
    """Norm layers are layers but not depth: their small gradients make no vanishing trend."""
    infos, rms = [], []
    for i in range(12):
        infos.append(LayerInfo(f"fc{i}", "Linear", 2 * i, 64, activation="ReLU"))
        infos.append(LayerInfo(f"bn{i}", "BatchNorm1d", 2 * i + 1, 64))
        rms += [1e-2, 1e-2 * 10.0 ** (-4 + 4 * i / 11)]  # norms: 4 decades across depth
    n = 30
    t = Trace.from_arrays(
        infos, np.arange(n), {"grad_rms": np.tile(rms, (n, 1))}, scalars={"loss": np.full(n, 2.3)}
    )
    assert run("vanishing_gradient", t) is None
    # The same decades on the weight layers do fire.
    rms_w = [v for i in range(12) for v in (1e-2 * 10.0 ** (-4 + 4 * i / 11), 1e-2)]
    t2 = Trace.from_arrays(
        infos, np.arange(n), {"grad_rms": np.tile(rms_w, (n, 1))}, scalars={"loss": np.full(n, 2.3)}
    )
    assert run("vanishing_gradient", t2) is not None


def _adam_without_warmup(loss_at_19: float, end: float = 2.6) -> Trace:
    """HF GPT-2 under the Trainer's defaults (AdamW 1e-3, no warm-up, clipping at 1): update
    ratio 0.11 at the densely sampled steps 0-2, then 0.01 every 10 steps; the loss falls
    5.4 -> 4.8 over its first window (5% of the 5.06 start) and reaches ``loss_at_19`` at
    step 19, then ``end`` at step 200."""
    n = 200
    ur = np.full((n, 3), np.nan)
    ur[::10] = 0.01
    ur[:3] = [0.02, 0.11, 0.11]
    ur[3:20] = 0.01
    loss = np.interp(np.arange(n), [0, 1, 9, 19, 199], [5.4, 5.06, 4.8, loss_at_19, end])
    return trace_of(
        3, n, {"update_ratio": ur}, scalars={"loss": loss, "clip_coef": np.full(n, 0.5)}
    )


@pytest.mark.parametrize(
    ("loss_at_19", "end", "fires"), [(4.0, 4.0, False), (4.7, 4.7, True), (4.7, 2.6, False)]
)
def test_start_span_is_judged_by_the_loss_after_it(
    loss_at_19: float, end: float, fires: bool
) -> None:
    """A high-ratio span inside the dense start is judged at the end of the first 20 logged
    losses, not within the window it began in: the loss needs steps to answer. 21% below the
    start by step 19 is productive; 7% is not, unless the loss falls steadily after it (to
    2.6 by step 200: test_an_adaptive_optimizers_first_steps_..._are_productive)."""
    f = run("unstable_updates", _adam_without_warmup(loss_at_19, end))
    assert (f is not None) == fires
    if f is not None:
        assert f.steps == (0, 2)
        assert f.evidence["loss_response"]["progress"] < TH.unstable_updates.min_progress


# ------------------------------------------- conv -> BatchNorm -> SiLU nets (HF EfficientNet)
def _conv_bn_net(blocks: int, gate_layers: int = 0, gain: float = 1.0) -> list[LayerInfo]:
    """``blocks`` x (Conv2d -> BatchNorm2d -> SiLU, the recorder giving the SiLU to the norm),
    then ``gate_layers`` squeeze-excite gates (Conv2d -> Sigmoid), then a Linear head."""
    out: list[LayerInfo] = []
    for i in range(blocks):
        out.append(LayerInfo(f"c{i}", "Conv2d", len(out), 16 * 16 * 9, {"weight": [16, 16, 3, 3]}))
        out.append(
            LayerInfo(
                f"bn{i}", "BatchNorm2d", len(out), 32, {"weight": [16], "bias": [16]},
                activation="SiLU",
            )
        )  # fmt: skip
    for i in range(gate_layers):
        shapes = {"weight": [16, 4, 1, 1], "bias": [16]}
        out.append(LayerInfo(f"se{i}", "Conv2d", len(out), 80, shapes, activation="Sigmoid"))
    out.append(LayerInfo("head", "Linear", len(out), 170, {"weight": [10, 16], "bias": [10]}))
    return out


def test_the_activation_after_a_conv_is_the_one_after_its_norm() -> None:
    """Three conv -> BatchNorm -> SiLU blocks outnumber two sigmoid gates: the activation the
    depth rules name is SiLU (the gates' sigmoid, when only the layers' own counted)."""
    from gradwatch.diagnosis._common import activation_after, dominant_activation

    infos = _conv_bn_net(3, gate_layers=2)
    trace = Trace.from_arrays(infos, [0], {"grad_rms": np.ones((1, len(infos)))})
    cols = trace.path_columns()
    assert [activation_after(trace, c) for c in cols] == ["SiLU"] * 3 + ["Sigmoid"] * 2 + [None]
    assert dominant_activation(trace, cols) == "silu"


def _collapsing_conv_bn_trace(gain: float, n_steps: int = 30) -> Trace:
    """Six conv -> BatchNorm -> SiLU blocks whose gradient falls 5 decades toward the input;
    the norms' gains start at RMS ``gain`` (weight_norm = gain sqrt(16), shift 0)."""
    infos = _conv_bn_net(6)
    cols = [i for i, info in enumerate(infos) if info.role != "norm"]
    g = np.ones((n_steps, len(infos)))
    g[:, cols] = depth_profile(len(cols), 5.0, base=1e-6)
    wn = np.ones((n_steps, len(infos)))
    wn[:, [i for i, info in enumerate(infos) if info.role == "norm"]] = gain * 4.0
    return Trace.from_arrays(infos, np.arange(n_steps), {"grad_rms": g, "weight_norm": wn})


@pytest.mark.parametrize(
    ("gain", "first"), [(0.02, "init_he"), (0.5, "init_he"), (0.6, "residual")]
)
def test_vanishing_through_norms_of_tiny_gain_offers_a_reinit_first(
    gain: float, first: str
) -> None:
    """HF EfficientNet draws its BatchNorm gains from N(0, 0.02): a vanishing gradient through
    norms that start 2x or more under their identity is offered a re-initialisation first
    (which puts torch's norms back to 1), and no added norm; at gain 1, the depth remedies."""
    f = run("vanishing_gradient", _collapsing_conv_bn_trace(gain))
    assert f is not None and f.severity == "critical"
    ids = [h.id for h in f.remedies]
    assert ids[0] == first
    assert ("batchnorm" in ids) == (first == "residual")
    if gain <= 0.5:
        assert f"gains of RMS {gain:.2g}, not 1" in f.remedies[0].reason


def _normed_mlp(n: int) -> list[LayerInfo]:
    """``n`` x (Linear -> ReLU -> LayerNorm) on the main path, then a head."""
    out: list[LayerInfo] = []
    for i in range(n):
        shapes = {"weight": [16, 16], "bias": [16]}
        out.append(LayerInfo(f"fc{i}", "Linear", len(out), 272, shapes, activation="ReLU"))
        out.append(LayerInfo(f"ln{i}", "LayerNorm", len(out), 32, {"weight": [16], "bias": [16]}))
    out.append(LayerInfo("head", "Linear", len(out), 170, {"weight": [10, 16], "bias": [10]}))
    return out


@pytest.mark.parametrize(("collapse", "gain", "named"), [(0.3, 0.02, True), (0.3, 1.0, False),
                                                         (1.0, 0.0, False)])  # fmt: skip
def test_poor_init_names_norm_gains_of_a_measured_collapse(
    collapse: float, gain: float, named: bool
) -> None:
    """Norms on the main path starting far from gain 1 are named culprits of an activation
    std that collapses (0.3x a layer); with no collapse, a gain of 0 (Gemma's RMSNorm, which
    multiplies by 1 + weight) says nothing. Norms at gain 1 reset every layer's scale, so the
    layers that feed them are not held to unit variance: no finding."""
    infos = _normed_mlp(6)
    n = len(infos)
    fc = [i for i, info in enumerate(infos) if info.role != "norm"]
    norms = [i for i, info in enumerate(infos) if info.role == "norm"]
    act = np.ones((5, n))
    act[:, fc] = collapse ** np.arange(1, len(fc) + 1)
    wn = np.full((5, n), 16 * math.sqrt(2 / 16))  # He-scaled 16 x 16 weights: std sqrt(2/16)
    wn[:, norms] = gain * 4.0
    trace = Trace.from_arrays(infos, np.arange(5), {"act_std": act, "weight_norm": wn})
    f = run("poor_initialization", trace)
    if collapse == 1.0 or gain == 1.0:
        assert f is None
        return
    assert f is not None and f.severity == "warning"
    assert ("norm_gain_rms" in f.evidence) == named
    if named:
        assert set(f.evidence["norm_gain_rms"]) == {f"ln{i}" for i in range(6)}
        assert f.evidence["norm_gain_rms"]["ln0"] == pytest.approx(gain)
        assert "6 norm layer(s) on the main path start with gains of RMS 0.02" in f.message
        assert set(f.layers) >= {f"ln{i}" for i in range(6)}


def _adam_start(after: np.ndarray, ratio_rows: int = 3) -> Trace:
    """Update ratio 0.17 over the first ``ratio_rows`` steps (then 0.01), every step sampled;
    the loss -2% by step 19, then ``after`` (one value per step from step 20)."""
    n = 20 + len(after)
    ur = np.full((n, 4), 0.01)
    ur[:ratio_rows] = 0.17
    loss = np.concatenate([5.17 - 0.1 * np.arange(20) / 19, after])
    return trace_of(4, n, {"update_ratio": ur}, scalars={"loss": loss})


def test_an_adaptive_optimizers_first_steps_before_a_steadily_falling_loss_are_productive() -> None:
    """HF GPT-2 (12 layers) with its tied embeddings frozen, AdamW 1e-3: its output projections
    move 0.17x their norm at steps 0-2 (Adam moves each weight by ~lr at first), the loss is
    only 2% lower by step 19 but falls steadily after (z -5.7; three times the rate trains it
    faster, a tenth slower). Only the progress test failed and the loss keeps falling: no
    finding (it said the rate was too high). A loss flat after the start, or ratios that stay
    high past the first steps, still fire."""
    t = np.arange(180)
    falling = 5.07 - 0.25 * t / 179 + 0.003 * np.sin(1.7 * t)
    assert run("unstable_updates", _adam_start(falling)) is None
    flat = 5.07 + 0.003 * np.sin(1.7 * t)
    f = run("unstable_updates", _adam_start(flat))
    assert f is not None and "(-1% of its start)" in f.message
    sustained = run("unstable_updates", _adam_start(falling, ratio_rows=60))
    assert sustained is not None
