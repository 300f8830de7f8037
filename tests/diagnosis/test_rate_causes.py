"""Causes outside the model's structure: the learning rate, the weights' precision, the graph.

Weights that stop moving are told why: no gradient at all (layers the loss's graph does not
reach), a schedule that took the rate to almost nothing, or half-precision weights whose
steps round away, before a gradient lost on the way. Findings
that began after steps larger than the weights name a lower rate first. A loss plateau that
climbs says so.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from diag_helpers import depth_profile, trace_of
from torch import nn

import gradwatch as gw
from gradwatch.diagnosis import RULES, Thresholds, rank_remedies
from gradwatch.diagnosis.finding import Finding, RemedyHint
from gradwatch.diagnosis.large_steps import settle_large_steps
from gradwatch.trace import Trace

TH = Thresholds()
N = 100


def _unstable(trace: Trace) -> Finding | None:
    return RULES["unstable_updates"](trace, TH.unstable_updates)


def _stalled_trace(
    lr: np.ndarray | None,
    dtypes: dict[str, int] | None = None,
    loss: np.ndarray | None = None,
) -> Trace:
    """4 layers training at an update ratio equal to the rate (1e-3 without ``lr``) for 60
    steps, then 1e-10 (stalled); ``lr`` as the optimizer's recorded rate, ``dtypes`` as the
    watch's record of the trainable parameters' dtypes, ``loss`` logged (a slow fall by
    default)."""
    ratio = np.full((N, 4), 1e-3) if lr is None else np.tile(lr[:, None], (1, 4))
    ratio[60:] = 1e-10
    scalars = {"loss": 2.3 - np.arange(N) * 0.001 if loss is None else loss}
    if lr is not None:
        scalars["optimizer_lr"] = lr
    trace = trace_of(4, N, {"update_ratio": ratio, "grad_rms": np.full(4, 1e-3)}, scalars=scalars)
    if dtypes is not None:
        trace.meta["model"] = {"param_dtypes": dtypes}
    return trace


def _step_decay() -> np.ndarray:
    """1e-3 until step 29, then a tenth every 10 steps: 1e-7 from step 60, 1e-10 at 99."""
    return 1e-3 * 0.1 ** np.maximum(0, (np.arange(N) - 20) // 10)


def test_weights_stopped_by_a_decayed_schedule_name_the_rate_not_the_gradient() -> None:
    """A StepLR sized in epochs but stepped every batch: the stalled weights are told the
    rate fell to 1e-10, 1e-7 of its peak and under a thousandth of it from step 60, and no
    structural remedy is offered (none would move the weights)."""
    f = _unstable(_stalled_trace(_step_decay()))
    assert f is not None and f.severity == "warning"
    assert f.evidence["stalled_by"] == "learning_rate"
    assert f.evidence["learning_rate"] == {"value": 1e-10, "peak": 1e-3, "below_share_from": 60}
    assert f.remedies == ()
    assert "because the learning rate fell to 1e-10 (1e-07 of its peak 0.001" in f.message
    assert "under 0.001 of it from step 60" in f.message and "once per epoch" in f.message


def test_a_schedule_that_ends_at_zero_by_design_is_not_blamed() -> None:
    """A linear decay to 0 over the run spends its last steps near 0 by design: its last
    rows run at 1-3% of the peak, over a thousandth, so stalled weights there are told of a
    lost gradient, as under a constant rate."""
    for lr in (np.linspace(1e-3, 1e-5, N), np.full(N, 1e-3)):
        f = _unstable(_stalled_trace(lr))
        assert f is not None and f.evidence["stalled_by"] == "gradient"
        assert [h.id for h in f.remedies] == ["residual", "batchnorm", "init_he"]
        assert f.message.endswith("so that layer is no longer training.")


def _cosine_to_zero(peak: float) -> np.ndarray:
    """A cosine decay from ``peak`` to 0 at step N: under a thousandth of the peak from step
    98 (2% of the run), 2.5e-4 of it at step 99."""
    return peak * 0.5 * (1 + np.cos(np.pi * np.arange(N) / N))


def _rate_trace(lr: np.ndarray, ratio: np.ndarray) -> Trace:
    """4 layers with update ratios ``ratio`` (N, 4) under the recorded rate ``lr``, the
    loss falling slowly."""
    scalars = {"loss": 2.3 - np.arange(N) * 0.001, "optimizer_lr": lr}
    return trace_of(4, N, {"update_ratio": ratio, "grad_rms": np.full(4, 1e-3)}, scalars=scalars)


def test_the_last_steps_of_a_decay_to_zero_are_not_weights_that_stopped() -> None:
    """A fine-tuning rate (2e-5) decayed to zero by a cosine: every layer's steps follow the
    rate (ratio 0.1 x lr), so the last rows read 2e-9-5e-10 of the weights' norm, under 1e-8,
    and the rate is under a thousandth of its peak there, but for 2% of the run, by design:
    no finding (it was "the schedule stopped training"). A layer that also lost its
    gradient (1e-12 of its norm over the last 40 steps, 5e-9 at the peak rate) is still
    told, alone, as a gradient lost on the way."""
    lr = _cosine_to_zero(2e-5)
    ratio = np.tile(0.1 * lr[:, None], (1, 4))
    assert np.median(ratio[-4:, 0]) < TH.unstable_updates.small_ratio
    assert _unstable(_rate_trace(lr, ratio)) is None
    ratio = ratio.copy()  # (the trace froze the first)
    ratio[60:, 2] = 1e-12
    trace = _rate_trace(lr, ratio)
    f = _unstable(trace)
    assert f is not None and f.evidence["stalled_by"] == "gradient"
    assert f.layers == (trace.layers[2].name,)


def test_a_decay_that_stops_training_with_a_tenth_of_the_run_left_is_named() -> None:
    """Steps that follow the rate (ratio = lr), which falls from 1e-3 to 1e-9: for the last
    10% of the run or more that is the schedule stopping training, for less the end of a
    planned decay."""
    for fell, named in ((90, True), (92, False)):
        lr = np.where(np.arange(N) < fell, 1e-3, 1e-9)
        f = _unstable(_rate_trace(lr, np.tile(lr[:, None], (1, 4))))
        if named:
            assert f is not None and f.evidence["stalled_by"] == "learning_rate"
            assert f.evidence["learning_rate"]["below_share_from"] == fell  # type: ignore[index]
        else:
            assert f is None


def test_a_rate_at_zero_for_the_last_steps_is_the_end_of_the_schedule() -> None:
    """A run that goes on for 3 steps past its schedule's end (the rate at exactly 0, the
    weights not moving at all): the last block's ratios are 0 because the rate is, not
    because a gradient was lost, and it is too short to be a schedule that stopped training."""
    lr = np.where(np.arange(N) < N - 3, 1e-3, 0.0)
    assert _unstable(_rate_trace(lr, np.tile(lr[:, None], (1, 4)))) is None


def test_weights_that_stopped_once_the_model_finished_are_not_a_finding() -> None:
    """Stalled weights where the loss has fallen to a tenth of its start or below over the
    whole last block: the model has no error left to learn from (HF ResNet-50 memorising 4
    images: loss 7.6 -> 0.001 by step 40, its last BatchNorm gains then under 1e-8 a step).
    The same stall with the loss back above a tenth in those steps is still told."""
    done = np.where(np.arange(N) < 40, 2.3, 1e-3)
    assert _unstable(_stalled_trace(None, loss=done)) is None
    relapsed = done.copy()
    relapsed[-10:] = 1.0  # the last loss window above a tenth of the start: learning again
    f = _unstable(_stalled_trace(None, loss=relapsed))
    assert f is not None and f.evidence["stalled_by"] == "gradient"


@pytest.mark.parametrize(("dtype", "bits"), [("bfloat16", 8), ("float16", 11)])
def test_half_precision_weights_are_named_when_every_weight_is_half(dtype: str, bits: int) -> None:
    """Every trainable parameter in bfloat16 (or float16) under a steady rate: the steps
    round away, which the message says with the dtype's resolution and the fix; mixed
    dtypes (an fp32 master copy somewhere) are not claimed."""
    f = _unstable(_stalled_trace(np.full(N, 1e-4), {dtype: 1000}))
    assert f is not None and f.evidence["stalled_by"] == "precision"
    assert f.evidence["weights_dtype"] == dtype and f.remedies == ()
    assert f"weights are {dtype}, which keeps {bits} significant bits" in f.message
    assert f"about 1/{2**bits} of a weight" in f.message and "learning rate of 0.0001" in f.message
    assert f"torch.autocast(dtype=torch.{dtype})" in f.message
    mixed = _unstable(_stalled_trace(np.full(N, 1e-4), {dtype: 1000, "float32": 10}))
    assert mixed is not None and mixed.evidence["stalled_by"] == "gradient"


def test_a_decayed_rate_is_named_before_the_precision() -> None:
    """Both seen: the rate, which stops any dtype's weights, is the cause named."""
    f = _unstable(_stalled_trace(_step_decay(), {"bfloat16": 1000}))
    assert f is not None and f.evidence["stalled_by"] == "learning_rate"


def _tiny_bf16_run(dtype: torch.dtype) -> list[Finding]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.RMSNorm(16), nn.Tanh(), nn.Linear(16, 1))
    model.to(dtype)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(64, 8, dtype=dtype), torch.randn(64, 1, dtype=dtype)
    with gw.watch(model, opt, sample_every=1, overhead=None) as w:
        for _ in range(40):
            loss = (model(x) - y).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    assert w.trace.meta["model"]["param_dtypes"] == {str(dtype).removeprefix("torch."): 177}
    return list(gw.diagnose(w.trace))


def test_a_bfloat16_model_s_stalled_norm_gain_is_told_its_steps_round_away() -> None:
    """Recorded end to end: an RMSNorm gain of 1.0 in bfloat16 under AdamW 1e-4 never moves
    (a step of 1e-4 is under half of bfloat16's spacing at 1.0, 2**-8); the finding names
    the precision. The same model in float32 moves it and draws no such finding."""
    (f,) = [f for f in _tiny_bf16_run(torch.bfloat16) if f.rule == "unstable_updates"]
    assert f.evidence["stalled_by"] == "precision" and "1" in f.layers
    assert not [f for f in _tiny_bf16_run(torch.float32) if f.rule == "unstable_updates"]


class _DetachedEncoder(nn.Module):
    """A ReLU encoder and a head; from step ``cut_from`` on the forward detaches the
    encoder's output (the classic mistake: ``.detach()`` left in the forward)."""

    def __init__(self, cut_from: int | None) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
        self.head = nn.Linear(32, 4)
        self.cut_from, self.step = cut_from, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.enc(x)
        cut = self.cut_from is not None and self.step >= self.cut_from
        self.step += 1
        return self.head(h.detach() if cut else h)


def _encoder_run(cut_from: int | None) -> list[Finding]:
    """300 Adam 1e-2 steps of 4-class data under the encoder above."""
    torch.manual_seed(0)
    model = _DetachedEncoder(cut_from)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(512, 8)
    y = (x[:, :2].sum(1) > 0).long() + 2 * (x[:, 2] > 0).long()
    gen = torch.Generator().manual_seed(0)
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(300):
            i = torch.randint(0, 512, (64,), generator=gen)
            loss = torch.nn.functional.cross_entropy(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    return list(gw.diagnose(w.trace))


@pytest.mark.parametrize(
    ("cut_from", "when"), [(0, "at any recorded step"), (20, "from step 20")],
    ids=["always", "from_step_20"],
)  # fmt: skip
def test_layers_the_loss_graph_does_not_reach_are_told_so_without_remedies(
    cut_from: int, when: str
) -> None:
    """An encoder cut off by a ``.detach()`` (from the start, or from step 20) gets no
    gradient (``.grad`` None): its weights stop, and the finding says no gradient reached
    them and since when, with no structural remedy (they were told "no longer training",
    with residual connections first). The same model without the detach draws no such
    finding. (Cut at step 150, this easy task has already finished: no finding.)"""
    (f,) = [f for f in _encoder_run(cut_from) if f.rule == "unstable_updates"]
    assert f.severity == "warning" and f.remedies == ()
    assert f.evidence["stalled_by"] == "no_gradient" and set(f.layers) == {"enc.0", "enc.2"}
    assert f"they received no gradient {when} (their .grad stayed None)" in f.message
    assert not [f for f in _encoder_run(None) if f.rule == "unstable_updates"]


class _Body(nn.Module):
    """A body that owns a parameter its forward never uses, beside layers that train (HF
    XLNet's model owns ``mask_emb``, used only by pretraining's permutation masks)."""

    def __init__(self) -> None:
        super().__init__()
        self.mask_emb = nn.Parameter(0.02 * torch.randn(1, 32))
        self.layers = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def test_a_parameter_a_module_owns_but_never_uses_is_an_info_not_a_cut_graph() -> None:
    """The body's own ``mask_emb`` gets no gradient while the layers inside the body train:
    an info naming the parameter (HF XLNet drew the "no gradient ... cuts a layer off the
    graph" warning live at step 100 and in a 110-step run), not the warning a leaf layer cut
    off by a ``.detach()`` draws (above)."""
    torch.manual_seed(0)
    model = nn.Sequential(_Body(), nn.Linear(32, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(256, 8), torch.randint(0, 4, (256,))
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(60):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    (f,) = [f for f in gw.diagnose(w.trace) if f.rule == "unstable_updates"]
    assert f.severity == "info" and f.layers == ("0",)
    assert f.evidence["unused_own_parameters"] == {"0": ["mask_emb"]}
    assert f.message.startswith("Unused parameters: `0.mask_emb`, owned by layer 'L0 0' itself")


# ---------------------------------------------------------------- steps larger than the weights
def _finding(rule: str, severity: str, steps: tuple[int, int], **evidence: object) -> Finding:
    hint = RemedyHint("init_he", "a variance-preserving initialisation")
    return Finding(rule, severity, ("fc",), steps, dict(evidence), f"{rule}: measured.", (hint,))


def _erasing() -> Finding:
    """The unstable_updates finding of steps 2.4x and 1.1x two layers' weights at step 0, with
    the rule's remedies for such steps (a lower rate first)."""
    return Finding(
        "unstable_updates",
        "warning",
        ("a", "b"),
        (0, 14),
        {"high_update_ratio": {"a": 2.4, "b": 1.1}, "erased_at_start": {"a": 2.4, "b": 1.1}},
        "unstable_updates: measured.",
        (RemedyHint("lower_lr", "smaller steps"), RemedyHint("lr_warmup", "small first steps")),
    )


def test_what_followed_steps_larger_than_the_weights_names_a_lower_rate_first() -> None:
    """Dead units from step 100 after steps of 2.4x the weights at step 0: lower_lr first,
    its own remedies after, a sentence that says why, and the step in the evidence."""
    dead = _finding("dead_units", "critical", (100, 190))
    out = settle_large_steps([_erasing(), dead])
    assert [h.id for h in out[1].remedies] == ["lower_lr", "init_he"]
    assert out[1].evidence["after_large_steps"] == 0
    assert out[1].message == (
        "dead_units: measured. It began after steps that moved 2 layer(s) by more than their "
        "own norm, which erases what the initialisation built (unstable_updates, from step "
        "0): a lower learning rate is the first thing to try."
    )
    assert rank_remedies(out)[0].remedy == "lower_lr"
    assert rank_remedies([_erasing(), dead])[0].remedy == "init_he"  # (without the pass)


def test_what_followed_steps_that_overshoot_names_a_lower_rate_first_too() -> None:
    """Steps under the weights' own norm (0.6x from step 20, after a warm-up) that the loss
    did not thrive on: dead units from step 100 get lower_lr first as well, told the size of
    the steps. A stalled-weights finding (no high ratio) is not a cause of anything here."""
    steps = Finding(
        "unstable_updates", "warning", ("a",), (20, 60), {"high_update_ratio": {"a": 0.6}},
        "unstable_updates: measured.", (RemedyHint("lower_lr", "smaller steps"),),
    )  # fmt: skip
    dead = _finding("dead_units", "warning", (100, 190))
    out = settle_large_steps([steps, dead])
    assert [h.id for h in out[1].remedies] == ["lower_lr", "init_he"]
    assert "It began after steps of up to 0.6x the weights' norm that overshoot " in out[1].message
    assert "(unstable_updates, from step 20)" in out[1].message
    stalled = replace(steps, evidence={"low_update_ratio": {"a": 1e-9}})
    assert settle_large_steps([stalled, dead])[1] == dead
    early = _finding("dead_units", "warning", (10, 190))  # began before the large steps
    assert settle_large_steps([steps, early])[1] == early


@pytest.mark.parametrize(
    "other",
    [
        _finding("vanishing_gradient", "critical", (0, 99)),  # there from the first step
        _finding("dead_units", "info", (100, 190)),  # not an alarm
        _finding("poor_initialization", "warning", (20, 30)),  # about the start, not after
    ],
    ids=["from_the_start", "info", "not_a_consequence"],
)
def test_findings_that_did_not_follow_the_steps_keep_their_remedies(other: Finding) -> None:
    assert settle_large_steps([_erasing(), other])[1] == other


def test_nothing_is_blamed_on_the_rate_when_the_gradient_itself_blew_up() -> None:
    """A large initialisation without normalisation makes the same huge steps through an
    exploding gradient: clipping stays what the ranking leads with."""
    dead = _finding("dead_units", "critical", (100, 190))
    exploding = _finding("exploding_gradient", "critical", (4, 6))
    findings = [_erasing(), exploding, dead]
    assert settle_large_steps(findings) == findings
    assert settle_large_steps([_finding("unstable_updates", "warning", (0, 14)), dead])[1] == dead


def test_an_erasing_start_puts_lower_lr_before_a_warm_up_in_unstable_updates() -> None:
    """The rule itself: a start whose steps outweigh the weights (7x) offers lower_lr first,
    then the warm-up; under the weights' own norm (0.9x, with the loss spike) the warm-up
    stays first (diagnosis/erased.py has the measurements)."""

    def remedies(update0: float) -> list[str]:
        ratio = np.full((N, 4), np.nan)
        ratio[::10] = 0.01
        ratio[0, 2] = update0
        loss = 7.0 + 3.8 * np.exp(-np.arange(N) / 30.0)
        loss[2:6] = [14.0, 20.0, 24.0, 15.0]
        lr = np.full(N, 5e-3)
        scalars = {"loss": loss, "global_grad_norm": np.ones(N), "optimizer_lr": lr}
        f = _unstable(trace_of(4, N, {"update_ratio": ratio}, scalars=scalars))
        assert f is not None
        return [h.id for h in f.remedies]

    assert remedies(7.0)[:2] == ["lower_lr", "lr_warmup"]
    assert remedies(0.9)[:2] == ["lr_warmup", "lower_lr"]


# ---------------------------------------------------------------- a plateau that climbs
def test_a_plateau_whose_loss_climbs_says_so_and_names_the_rate() -> None:
    """Beside a gradient finding, a loss that went 2.3 -> 6 from its plateau is not said to
    have "stayed near" its level: the message gives both ends, and the remedy is a lower
    rate (a gradient lost on the way does not make a loss climb)."""
    t = np.arange(N)
    loss = np.where(t < 10, 2.3, 2.3 + 3.7 * (t - 10) / 89) + 0.002 * np.sin(1.7 * t)
    grad = np.tile(depth_profile(6, 5.0), (N, 1))
    trace = trace_of(6, N, {"grad_rms": grad}, scalars={"loss": loss})
    (f,) = [f for f in gw.diagnose(trace) if f.rule == "loss_plateau"]
    assert f.evidence["rising"] is True
    assert "the loss rose from 2.3" in f.message and "to 5.8" in f.message
    assert "stayed near" not in f.message
    assert [h.id for h in f.remedies] == ["lower_lr"]


def test_a_plateau_beside_weights_a_schedule_stopped_offers_no_structural_remedy() -> None:
    """The loss flat from the start beside weights the schedule stopped: the plateau says
    what stopped them and drops residual/relu/init_he (none would move the weights)."""
    flat = np.full(N, 2.3) + 0.001 * np.sin(np.arange(N))
    findings = gw.diagnose(_stalled_trace(_step_decay(), loss=flat))
    (f,) = [f for f in findings if f.rule == "loss_plateau"]
    assert f.remedies == () and f.evidence["cause"] == "stalled_by_learning_rate"
    assert f.message.endswith(
        "The weights stopped moving because of a learning rate the schedule took to almost "
        "nothing (unstable_updates): no structural remedy mends that."
    )
