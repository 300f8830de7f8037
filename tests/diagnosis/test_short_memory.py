"""``short_memory`` on last-position profiles: hand-built traces, then real byte-level LMs.

A loss with a term at every position (a language model) leaves the whole-loss profile flat;
the rule must read the last-position profile then. The hand-built profiles are closed-form
exponentials, so the fall the rule computes is known without running its code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.diagnosis import RULES, Thresholds
from gradwatch.diagnosis.finding import Finding
from gradwatch.trace import LayerInfo, Trace

TH = Thresholds().short_memory
LOOKBACK, NEAR = TH.lookback, TH.near_steps


def _run(trace: Trace) -> Finding | None:
    return RULES["short_memory"](trace, TH)


def _decay(length: int, decades_per_step: float) -> np.ndarray:
    """A profile over input positions t falling ``decades_per_step`` per step back from T-1."""
    return 10.0 ** (-decades_per_step * (length - 1 - np.arange(length)))


def _bent(length: int, near_rate: float, far_rate: float) -> np.ndarray:
    """Falls ``near_rate`` decades per step over the nearest NEAR steps, ``far_rate`` beyond."""
    dist = (length - 1 - np.arange(length)).astype(np.float64)
    return 10.0 ** -(near_rate * np.minimum(dist, NEAR) + far_rate * np.maximum(dist - NEAR, 0))


def _lm_trace(last: np.ndarray, whole: np.ndarray | None = None, rows: int = 5) -> Trace:
    infos = [LayerInfo("rnn", "RNN", 0, 100, recurrent=True), LayerInfo("head", "Linear", 1, 10)]
    flat = np.ones_like(last) if whole is None else whole
    steps = np.arange(rows)
    return Trace.from_arrays(
        infos,
        steps,
        {},
        recurrent={"rnn": (steps, np.tile(flat, (rows, 1)))},
        last_position={"rnn": (steps, np.tile(last, (rows, 1)))},
    )


# ---------------------------------------------------------------- hand-built traces
@pytest.mark.parametrize(
    ("fall", "expected"),
    [
        (TH.far_warn_decades - 0.01, None),
        (TH.far_warn_decades + 0.01, "warning"),
        (TH.far_critical_decades + 0.01, "critical"),
    ],
)
def test_the_decay_beyond_the_near_context_decides(fall: float, expected: str | None) -> None:
    """With a flat whole-loss profile, the last position's rate beyond `near_steps` decides;
    the near context (here 0.5 decades per step, 10 decades in all) does not count."""
    near_rate, far_rate = 0.5, fall / LOOKBACK
    f = _run(_lm_trace(_bent(200, near_rate, far_rate)))
    assert (f.severity if f else None) == expected
    if f:
        assert f.evidence["profile"] == "last_position"
        assert f.evidence["fit_from_steps_back"] == NEAR
        assert f.evidence["far_decay_decades_per_lookback"] == pytest.approx(fall, rel=1e-6)
        at_lookback = near_rate * NEAR + far_rate * (LOOKBACK - NEAR)
        assert f.evidence["measured_decades_at_lookback"] == pytest.approx(at_lookback, rel=1e-6)
        over = near_rate * NEAR + far_rate * (199 - NEAR)
        assert f.evidence["measured_decades_over_window"] == pytest.approx(over, rel=1e-6)
        assert f.evidence["horizon_steps"] == pytest.approx(2.0 / far_rate, rel=1e-5)
        assert f.evidence["points"] == 200 - NEAR
        assert "last position's loss" in f.message and f"nearest {NEAR} inputs" in f.message


def test_a_steep_near_context_that_flattens_is_quiet() -> None:
    """A gated cell's shape: 16 decades over the nearest 20 steps (the old 50-step fall would
    be critical), then 2 decades per 50 steps: quiet."""
    prof = _bent(200, 0.8, 2.0 / LOOKBACK)
    assert math.log10(prof[-1] / prof[-1 - LOOKBACK]) > 16.0
    assert _run(_lm_trace(prof)) is None


def test_underflowed_zeros_are_left_out_of_the_fit() -> None:
    """Exact zeros (float32 underflow) far back are not points of the fit."""
    rate = (TH.far_warn_decades + 1.0) / LOOKBACK
    prof = _decay(200, rate)
    prof[:100] = 0.0  # underflow beyond 100 steps back
    f = _run(_lm_trace(prof))
    assert f is not None and f.severity == "warning"
    assert f.evidence["far_decay_decades_per_lookback"] == pytest.approx(rate * LOOKBACK)
    assert f.evidence["points"] == 100 - NEAR
    assert f.evidence["measured_decades_over_window"] is None  # NaN, stored as JSON null


def test_a_gradient_dead_inside_the_near_context_is_critical() -> None:
    """Everything past the near context underflowed: the near decay is all there is to fit."""
    prof = _decay(200, 1.0)  # 1 decade per step
    prof[: 200 - NEAR] = 0.0
    f = _run(_lm_trace(prof))
    assert f is not None and f.severity == "critical"
    assert f.evidence["fit_from_steps_back"] == 0
    assert f.evidence["far_decay_decades_per_lookback"] == pytest.approx(LOOKBACK)
    assert f.evidence["measured_decades_at_lookback"] is None


def test_a_window_shorter_than_the_lookback_is_not_judged() -> None:
    """A 35-step window (PyTorch's LSTM LM recipe, bptt 35) cannot show whether the decay
    flattens past the near context: no verdict from the last-position profile however steep,
    while one step more than `lookback` is judged."""
    steep = 2.0 * TH.far_critical_decades / LOOKBACK
    assert _run(_lm_trace(_decay(35, steep))) is None
    assert _run(_lm_trace(_decay(LOOKBACK, steep))) is None
    f = _run(_lm_trace(_decay(LOOKBACK + 1, steep)))
    assert f is not None and f.severity == "critical"


def test_a_decaying_whole_profile_is_judged_as_before() -> None:
    """A loss on the last output (whole profile decays): the whole profile's verdict stands."""
    whole = _decay(20, 3.0 / 19)  # 3 decades over the sequence: a warning on its own
    f = _run(_lm_trace(whole, whole=whole))
    assert f is not None and f.severity == "warning"
    assert f.evidence["profile"] == "whole"
    assert f.evidence["decay_decades_over_sequence"] == pytest.approx(3.0, rel=1e-6)


def _loss_trace(whole: np.ndarray, end: float) -> Trace:
    """An LSTM's whole-loss profile ``whole`` at each of 40 steps, the loss 1 for the first 20
    and ``end`` after."""
    infos = [LayerInfo("rnn", "LSTM", 0, 100, recurrent=True)]
    steps = np.arange(40)
    loss = np.where(steps < 20, 1.0, end)
    rows = np.tile(whole, (40, 1))
    return Trace.from_arrays(
        infos, steps, {}, scalars={"loss": loss}, recurrent={"rnn": (steps, rows)}
    )


@pytest.mark.parametrize(
    ("end", "severity"),
    [(0.5, "warning"), (0.02, "warning"), (0.009, "info"), (math.inf, "warning")],
)
def test_a_solved_loss_makes_it_info(end: float, severity: str) -> None:
    """The same decay is told as info once the loss ended 99% below its start (what the net
    trained on lay within its reach), without remedies; a loss at 50% or 2% of its start, or
    one that blew up, keeps the warning."""
    whole = _decay(20, 3.0 / 19)
    f = _run(_loss_trace(whole, end))
    assert f is not None and f.severity == severity
    if severity == "info":
        assert f.remedies == ()
        assert (f.evidence["loss_start"], f.evidence["loss_end"]) == (1.0, end)
        assert "Yet the loss went 1 -> 0.009" in f.message and "further back" in f.message
    else:
        assert f.remedies and "loss_end" not in f.evidence


@pytest.mark.parametrize(
    ("per_step", "end", "severity"),
    [
        (0.03, 0.5, "info"),  # gentle, the loss halved
        (0.03, 0.95, "warning"),  # gentle, the loss did not improve by 10%
        (0.15, 0.5, "warning"),  # steeper than the far warning's rate (0.11 a step)
    ],
)
def test_a_gentle_decay_on_an_improving_loss_is_info(
    per_step: float, end: float, severity: str
) -> None:
    """A whole-loss decay over a long window (3 decades over 100 steps) gentler than the far
    warning's rate, on a loss that improved, is info; on a loss that did not improve, or at a
    tanh RNN's steepness, the warning stays."""
    length = 100 if per_step < 0.1 else 21
    whole = _decay(length, per_step)
    f = _run(_loss_trace(whole, end))
    assert f is not None and f.severity == severity
    assert (f.remedies == ()) == (severity == "info")


def test_an_lstm_that_memorised_its_targets_is_told_info() -> None:
    """A real LSTM fitting 16 random targets from 60-step random sequences: its gradient
    fades within ~20 steps (a warning or critical by the profile alone), yet its loss falls
    to ~0: the finding is info."""
    torch.manual_seed(0)
    lstm, head = nn.LSTM(8, 32, batch_first=True), nn.Linear(32, 1)
    model = nn.ModuleDict({"lstm": lstm, "head": head})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.randn(16, 60, 8), torch.randn(16, 1)
    with gw.watch(model, opt, overhead=None, sample_every=5) as w:
        for _ in range(300):
            opt.zero_grad()
            out, _ = lstm(x)
            loss = (head(out[:, -1]) - y).pow(2).mean()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    f = _run(w.trace)
    assert f is not None and f.severity == "info", f
    assert f.evidence["loss_end"] < 0.01 * f.evidence["loss_start"]
    assert f.evidence["decay_decades_over_sequence"] >= TH.warn_decades


def test_a_healthy_lstm_classifier_on_noisy_labels_draws_no_alarm() -> None:
    """An LSTM telling which of two stdlib files an 80-byte window comes from, 10% of its
    labels flipped: it learns (held-out accuracy on clean labels >= 95%) to the noise's
    loss floor, weighting recent inputs more (a whole-loss decay of 2+ decades, gentler than
    a tanh RNN's). It drew short_memory, and with it the plateau at the floor, as warnings."""
    import stringprep
    import textwrap

    torch.manual_seed(0)
    # Prose-heavy code and tables of code points (the real corpus's which-file task).
    sources = [torch.tensor(list(Path(m.__file__).read_bytes())) for m in (textwrap, stringprep)]
    gen = torch.Generator().manual_seed(0)

    def batch(n: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 2, (n,), generator=gen)
        starts = [int(torch.randint(0, len(sources[k]) - 80, (1,), generator=gen)) for k in y]
        x = torch.stack([sources[k][s : s + 80] for k, s in zip(y.tolist(), starts, strict=True)])
        flip = torch.rand(n, generator=gen) < noise
        return x, torch.where(flip, 1 - y, y)

    emb, lstm, head = nn.Embedding(256, 32), nn.LSTM(32, 64, batch_first=True), nn.Linear(64, 2)
    model = nn.ModuleDict({"emb": emb, "lstm": lstm, "head": head})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def forward(x: torch.Tensor) -> torch.Tensor:
        out, _ = lstm(emb(x))
        return head(out[:, -1])

    with gw.watch(model, opt, overhead=None) as w:
        for _ in range(300):
            x, y = batch(32, 0.1)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(forward(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            w.log(loss=loss)
    with torch.no_grad():
        x, y = batch(512, 0.0)
        assert (forward(x).argmax(1) == y).float().mean() >= 0.95
    findings = gw.diagnose(w.trace)
    assert not [f.message for f in findings if f.severity in ("warning", "critical")]
    (f,) = [f for f in findings if f.rule == "short_memory"]
    assert f.evidence["decay_decades_over_sequence"] >= TH.warn_decades
    assert f.evidence["loss_improving"] is True


def test_old_traces_without_last_position_profiles_read_the_whole_profile() -> None:
    """A trace with only whole-loss profiles (older recorders) behaves as it always did."""
    infos = [LayerInfo("rnn", "RNN", 0, 100, recurrent=True)]
    flat = Trace.from_arrays(infos, [0], {}, recurrent={"rnn": ([0], np.ones((1, 200)))})
    assert flat.profile_kinds("rnn") == ("whole",)
    assert _run(flat) is None


# ---------------------------------------------------------------- real byte-level LMs
_WINDOW, _HIDDEN = 200, 64


def _corpus() -> torch.Tensor:
    """Bytes of the standard library's ``json`` package sources (~48 KB, no download)."""
    files = sorted(Path(json.__file__).parent.glob("*.py"))
    data = b"".join(f.read_bytes() for f in files)
    return torch.tensor(list(data), dtype=torch.long)


class _ByteLM(nn.Module):
    def __init__(self, cell: type[nn.RNNBase]) -> None:
        super().__init__()
        self.emb = nn.Embedding(256, 32)
        self.rnn = cell(32, _HIDDEN, batch_first=True)
        self.head = nn.Linear(_HIDDEN, 256)  # per position: a next-byte prediction at every t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.emb(x)  # (B, T, 32)
        y, _ = self.rnn(e)  # (B, T, H)
        return self.head(y), e  # (B, T, 256)


def _train(cell: type[nn.RNNBase], steps: int) -> tuple[_ByteLM, Trace, torch.Tensor]:
    """Train a byte LM under gw.watch; the model, its trace and a held batch of windows."""
    torch.manual_seed(0)
    data, gen = _corpus(), torch.Generator().manual_seed(1)
    model = _ByteLM(cell)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def batch() -> torch.Tensor:
        starts = torch.randint(0, len(data) - _WINDOW - 1, (8,), generator=gen)
        return torch.stack([data[s : s + _WINDOW + 1] for s in starts.tolist()])

    with gw.watch(model, opt, sample_every=4, overhead=None) as w:
        for _ in range(steps):
            win = batch()
            logits, _ = model(win[:, :-1])
            loss = nn.functional.cross_entropy(logits.reshape(-1, 256), win[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    return model, w.trace, batch()


def _independent_far_rate(model: _ByteLM, win: torch.Tensor) -> float:
    """Decades per LOOKBACK steps the last position's loss gradient falls beyond NEAR steps
    back (least squares over the nonzero norms), by plain autograd on a held batch."""
    logits, e = model(win[:, :-1])
    loss_t = nn.functional.cross_entropy(logits[:, -1], win[:, -1])
    (g,) = torch.autograd.grad(loss_t, e)
    norms = g.double().square().sum(dim=(0, 2)).sqrt().flip(0)[NEAR:]  # by distance, from NEAR
    dist = torch.arange(NEAR, NEAR + len(norms), dtype=torch.float64)
    ok = norms > 0
    slope = np.polyfit(dist[ok].numpy(), torch.log10(norms[ok]).numpy(), 1)[0]
    return float(-slope * LOOKBACK)


def _whole_fall(trace: Trace) -> float:
    whole = np.nanmedian(trace.input_grad_profile("rnn").values, axis=0)
    return float(np.log10(whole[-1] / whole[-1 - LOOKBACK]))


def _recorded_far_rate(trace: Trace) -> float:
    """The same rate from the recorded last-position profile (median of its rows)."""
    rows = trace.input_grad_profile("rnn", kind="last_position").values
    norms = np.nanmedian(rows, axis=0)[::-1][NEAR:]
    dist = np.arange(NEAR, NEAR + len(norms), dtype=np.float64)
    ok = norms > 0
    return float(-np.polyfit(dist[ok], np.log10(norms[ok]), 1)[0] * LOOKBACK)


def test_short_memory_fires_on_a_tanh_rnn_language_model() -> None:
    """A tanh RNN byte LM: beyond the near context the last position's gradient goes on
    falling ~16 decades per 50 steps (checked with plain autograd), the whole-loss profile is
    flat, and the rule fires (critical) from the last-position profile."""
    model, trace, win = _train(nn.RNN, steps=20)
    assert _independent_far_rate(model, win) > TH.far_critical_decades
    assert abs(_whole_fall(trace)) < 1.0
    f = _run(trace)
    assert f is not None and f.layers == ("rnn",) and f.severity == "critical"
    assert f.evidence["profile"] == "last_position"
    assert f.evidence["far_decay_decades_per_lookback"] > TH.far_critical_decades  # type: ignore[operator]


@pytest.mark.parametrize(("cell", "steps"), [(nn.LSTM, 20), (nn.GRU, 100)])
def test_short_memory_is_quiet_on_gated_language_models(cell: type[nn.RNNBase], steps: int) -> None:
    """LSTM and GRU byte LMs trained the same way lose many decades over 50 steps (the near
    context carries a next-byte loss: the LSTM ~5), but their decay flattens beyond it
    (recorded 4.1 and 4.0 decades per 50 steps, by autograd at the end 2.1 and 2.8): the rule stays quiet."""
    model, trace, win = _train(cell, steps)
    assert 0.5 < _independent_far_rate(model, win) < TH.far_warn_decades
    assert 0.5 < _recorded_far_rate(trace) < TH.far_warn_decades
    recorded = np.nanmedian(trace.input_grad_profile("rnn", kind="last_position").values, axis=0)
    assert math.log10(recorded[-1] / recorded[-1 - LOOKBACK]) > 3.0  # far from flat near by
    assert _run(trace) is None


def test_the_dense_start_does_not_fill_the_window() -> None:
    """Rows of the recorder's dense start (every step of the first ``dense_steps``) count at
    the ``sample_every`` spacing only: a decaying profile measured on each of the first 20
    steps and healthy ones at steps 20-50 is judged mostly on the healthy ones (rows 0, 10,
    20 ... 50), as without a dense start; counting every row, the 10-row window would hold
    six of the untrained start."""
    length = 12
    steps = np.array([*range(20), *range(20, 60, 10)])
    bad, good = _decay(length, 1.0), _decay(length, 0.0)
    values = np.array([bad if s < 20 else good for s in steps])
    infos = [LayerInfo("rnn", "RNN", 0, 100, recurrent=True), LayerInfo("head", "Linear", 1, 10)]
    config = {"config": {"sample_every": 10, "dense_steps": 20}}
    trace = Trace.from_arrays(infos, steps, {}, recurrent={"rnn": (steps, values)}, meta=config)
    assert _run(trace) is None
    dense_only = Trace.from_arrays(
        infos, steps, {}, recurrent={"rnn": (steps, values)}, meta={"config": {}}
    )
    assert _run(dense_only) is not None  # without the config every row counts
