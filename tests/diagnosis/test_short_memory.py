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
LOOKBACK = TH.lookback


def _run(trace: Trace) -> Finding | None:
    return RULES["short_memory"](trace, TH)


def _decay(length: int, decades_per_step: float) -> np.ndarray:
    """A profile over input positions t falling ``decades_per_step`` per step back from T-1."""
    return 10.0 ** (-decades_per_step * (length - 1 - np.arange(length)))


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
        (TH.lookback_warn_decades - 0.01, None),
        (TH.lookback_warn_decades + 0.01, "warning"),
        (TH.lookback_critical_decades + 0.01, "critical"),
    ],
)
def test_last_position_decay_over_the_lookback(fall: float, expected: str | None) -> None:
    """With a flat whole-loss profile, the last position's fall over `lookback` steps decides."""
    f = _run(_lm_trace(_decay(200, fall / LOOKBACK)))
    assert (f.severity if f else None) == expected
    if f:
        assert f.evidence["profile"] == "last_position"
        assert f.evidence["decay_decades_over_lookback"] == pytest.approx(fall, rel=1e-6)
        assert f.evidence["measured_decades_at_lookback"] == pytest.approx(fall, rel=1e-6)
        assert f.evidence["horizon_steps"] == pytest.approx(2.0 * LOOKBACK / fall, rel=1e-6)
        assert "last position's loss" in f.message


def test_only_the_lookback_is_fitted_and_underflow_is_ignored() -> None:
    """Beyond `lookback` steps the profile does not count, nor do exact zeros (underflow)."""
    rate = (TH.lookback_warn_decades + 1.0) / LOOKBACK
    prof = _decay(200, rate)
    prof[: 200 - LOOKBACK - 1] = 1.0  # far inputs: whatever happens there is not read
    prof[200 - LOOKBACK - 1 : 200 - 40] = 0.0  # float32 underflow between 40 and 50 steps back
    f = _run(_lm_trace(prof))
    assert f is not None
    assert f.evidence["decay_decades_over_lookback"] == pytest.approx(rate * LOOKBACK, rel=1e-6)
    assert f.evidence["points"] == 40
    assert f.evidence["measured_decades_at_lookback"] is None  # NaN, stored as JSON null


def test_a_short_sequence_extrapolates_its_fitted_rate() -> None:
    """A 20-step sequence's per-step decay is judged as if continued to `lookback` steps."""
    rate = (TH.lookback_warn_decades + 0.5) / LOOKBACK
    f = _run(_lm_trace(_decay(20, rate)))
    assert f is not None and f.evidence["sequence_length"] == 20
    assert f.evidence["decay_decades_over_lookback"] == pytest.approx(rate * LOOKBACK, rel=1e-6)
    assert _run(_lm_trace(_decay(20, (TH.lookback_warn_decades - 0.5) / LOOKBACK))) is None


def test_a_decaying_whole_profile_is_judged_as_before() -> None:
    """A loss on the last output (whole profile decays): the whole profile's verdict stands."""
    whole = _decay(20, 3.0 / 19)  # 3 decades over the sequence: a warning on its own
    f = _run(_lm_trace(whole, whole=whole))
    assert f is not None and f.severity == "warning"
    assert f.evidence["profile"] == "whole"
    assert f.evidence["decay_decades_over_sequence"] == pytest.approx(3.0, rel=1e-6)


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

    with gw.watch(model, opt, sample_every=4) as w:
        for _ in range(steps):
            win = batch()
            logits, _ = model(win[:, :-1])
            loss = nn.functional.cross_entropy(logits.reshape(-1, 256), win[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    return model, w.trace, batch()


def _independent_fall(model: _ByteLM, win: torch.Tensor, back: int) -> float:
    """Decades the last position's loss gradient loses over ``back`` steps, by plain autograd."""
    logits, e = model(win[:, :-1])
    loss_t = nn.functional.cross_entropy(logits[:, -1], win[:, -1])
    (g,) = torch.autograd.grad(loss_t, e)
    norms = g.double().square().sum(dim=(0, 2)).sqrt()
    return float(torch.log10(norms[-1] / norms[-1 - back]))


def _whole_fall(trace: Trace) -> float:
    whole = np.nanmedian(trace.input_grad_profile("rnn").values, axis=0)
    return float(np.log10(whole[-1] / whole[-1 - LOOKBACK]))


def test_short_memory_fires_on_a_tanh_rnn_language_model() -> None:
    """A tanh RNN byte LM: the last position's gradient loses more than the warning bar within
    30 steps back (checked with plain autograd), the whole-loss profile is flat, and the rule
    fires from the last-position profile."""
    model, trace, win = _train(nn.RNN, steps=20)
    assert _independent_fall(model, win, 30) > TH.lookback_warn_decades
    assert abs(_whole_fall(trace)) < 1.0
    f = _run(trace)
    assert f is not None and f.layers == ("rnn",)
    assert f.evidence["profile"] == "last_position"
    assert f.evidence["decay_decades_over_lookback"] > TH.lookback_warn_decades  # type: ignore[operator]


def test_short_memory_is_quiet_on_an_lstm_language_model() -> None:
    """An LSTM byte LM trained the same way loses a few decades in 50 steps (near context
    carries a next-byte loss; ~9 at initialisation, ~5 after 20 steps), under the warning bar:
    the rule stays quiet."""
    model, trace, win = _train(nn.LSTM, steps=20)
    fall = _independent_fall(model, win, LOOKBACK)
    assert 1.0 < fall < TH.lookback_warn_decades / 1.5
    recorded = np.nanmedian(trace.input_grad_profile("rnn", kind="last_position").values, axis=0)
    assert 1.0 < math.log10(recorded[-1] / recorded[-1 - LOOKBACK]) < TH.lookback_warn_decades
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
