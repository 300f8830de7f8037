"""The recurrent profiles equal independent autograd references; recording them changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw


class _SeqModel(nn.Module):
    """Embedding -> one or two recurrent layers -> a per-position Linear decoder (an LM)."""

    def __init__(self, cell: type[nn.RNNBase], *, batch_first: bool, stacked: bool = False) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.emb = nn.Embedding(11, 4)
        self.rnn = cell(4, 6, batch_first=batch_first)
        self.rnn2 = cell(6, 5, batch_first=batch_first) if stacked else None
        self.head = nn.Linear(6 if self.rnn2 is None else 5, 11)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.emb(tokens)  # (B, T, 4) or (T, B, 4)
        y, _ = self.rnn(e)
        if self.rnn2 is not None:
            y, _ = self.rnn2(y)
        return self.head(y), e


def _losses(logits: torch.Tensor, targets: torch.Tensor, batch_first: bool) -> torch.Tensor:
    """Cross-entropy per position, shape (T,), each summed over the batch."""
    tdim = 1 if batch_first else 0
    ce = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return ce.view(targets.shape).sum(dim=1 - tdim)


def _norm_per_t(g: torch.Tensor, batch_first: bool) -> np.ndarray:
    dims = (0, 2) if batch_first else (1, 2)
    return g.double().square().sum(dim=dims).sqrt().numpy()


@pytest.mark.parametrize("cell", [nn.RNN, nn.LSTM, nn.GRU])
@pytest.mark.parametrize("batch_first", [True, False])
def test_last_position_profile_equals_the_last_positions_loss_gradient(
    cell: type[nn.RNNBase], batch_first: bool
) -> None:
    """On an LM trained on every position, the last-position profile is ||d loss_T / dx_t||
    computed independently (autograd on the last position's loss only), and the whole profile
    is ||d L / dx_t|| of the summed loss."""
    torch.manual_seed(0)
    model = _SeqModel(cell, batch_first=batch_first)
    shape = (3, 9) if batch_first else (9, 3)
    tokens = torch.randint(0, 11, shape)
    targets = torch.randint(0, 11, shape)
    with gw.watch(model) as w:
        logits, _ = model(tokens)
        _losses(logits, targets, batch_first).sum().backward()
        w.step()
    logits, e = model(tokens)
    per_t = _losses(logits, targets, batch_first)
    (g_last,) = torch.autograd.grad(per_t[-1], e, retain_graph=True)
    (g_all,) = torch.autograd.grad(per_t.sum(), e)
    trace = w.trace
    last = trace.input_grad_profile("rnn", kind="last_position")
    whole = trace.input_grad_profile("rnn")
    np.testing.assert_array_equal(last.steps, [0])
    assert last.kind == "last_position" and whole.kind == "whole"
    np.testing.assert_allclose(last.values[0], _norm_per_t(g_last, batch_first), rtol=1e-4)
    np.testing.assert_allclose(whole.values[0], _norm_per_t(g_all, batch_first), rtol=1e-4)
    assert trace.profile_kinds("rnn") == ("whole", "last_position")


def test_stacked_layers_each_measure_their_own_recurrence() -> None:
    """In a stack, the top layer's probe is d loss_T / d(its input) exactly; the lower layer's
    is the gradient its own last output passes back through its own recurrence,
    d(y1_T . g1_T)/dx_t with g1 = dL/dy1, both computed here without the recorder."""
    torch.manual_seed(1)
    model = _SeqModel(nn.GRU, batch_first=True, stacked=True)
    tokens, targets = torch.randint(0, 11, (2, 12)), torch.randint(0, 11, (2, 12))
    with gw.watch(model) as w:
        logits, _ = model(tokens)
        _losses(logits, targets, True).sum().backward()
        w.step()
    assert model.rnn2 is not None
    e = model.emb(tokens)
    y1, _ = model.rnn(e)
    y2, _ = model.rnn2(y1)
    per_t = _losses(model.head(y2), targets, True)
    (g_top,) = torch.autograd.grad(per_t[-1], y1, retain_graph=True)
    (g1,) = torch.autograd.grad(per_t.sum(), y1, retain_graph=True)
    (g_low,) = torch.autograd.grad(y1[:, -1], e, g1[:, -1])
    top = w.trace.input_grad_profile("rnn2", kind="last_position").values[0]
    low = w.trace.input_grad_profile("rnn", kind="last_position").values[0]
    np.testing.assert_allclose(top, _norm_per_t(g_top, True), rtol=1e-4)
    np.testing.assert_allclose(low, _norm_per_t(g_low, True), rtol=1e-4)


def test_probing_changes_no_gradient_and_no_output_gradient_statistic() -> None:
    """Parameter gradients and ||dL/d output|| are those of an unwatched run (the probe's extra
    backward accumulates nothing and is not counted as the step's gradient)."""
    torch.manual_seed(2)
    model = _SeqModel(nn.LSTM, batch_first=True)
    tokens, targets = torch.randint(0, 11, (4, 10)), torch.randint(0, 11, (4, 10))
    logits, _ = model(tokens)
    _losses(logits, targets, True).sum().backward()
    reference = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    # The RNN's output is a tuple: ||dL/dy|| of its first element, the sequence of outputs.
    y_ref = model.rnn(model.emb(tokens))[0]
    (g_y,) = torch.autograd.grad(_losses(model.head(y_ref), targets, True).sum(), y_ref)
    with gw.watch(model) as w:
        logits, _ = model(tokens)
        _losses(logits, targets, True).sum().backward()
        w.step()
    for p, ref in zip(model.parameters(), reference, strict=True):
        torch.testing.assert_close(p.grad, ref)
    col = w.trace.layer_names.index("rnn")
    assert w.trace.matrix("out_grad_norm")[0, col] == pytest.approx(
        g_y.double().norm().item(), rel=1e-5
    )


def test_profiles_only_on_sampled_steps_and_not_for_packed_sequences() -> None:
    """Profiles are measured on sampled steps only; a PackedSequence input gets none."""
    torch.manual_seed(3)
    model = _SeqModel(nn.RNN, batch_first=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gw.watch(model, opt, sample_every=3, dense_steps=0, overhead=None) as w:
        for _ in range(7):
            tokens, targets = torch.randint(0, 11, (2, 6)), torch.randint(0, 11, (2, 6))
            opt.zero_grad()
            logits, _ = model(tokens)
            _losses(logits, targets, True).sum().backward()
            opt.step()
    np.testing.assert_array_equal(
        w.trace.input_grad_profile("rnn", kind="last_position").steps, [0, 3, 6]
    )
    rnn = nn.GRU(3, 4, batch_first=True)
    packed = nn.utils.rnn.pack_padded_sequence(
        torch.randn(2, 5, 3), torch.tensor([5, 3]), batch_first=True
    )
    with gw.watch(rnn) as w2:
        out, _ = rnn(packed)
        out.data.sum().backward()
        w2.step()
    assert w2.trace.recurrent_layers == []


def test_the_probe_runs_densely_first_then_every_few_sampled_steps() -> None:
    """The last-position probe (one extra backward) runs on the first PROBE_DENSE sampled
    steps, then on every PROBE_EVERY-th at least PROBE_MIN_STEPS steps after the last such;
    the whole-loss profile on every sampled step. At sample_every=10 the spacing is every
    PROBE_EVERY-th sampled step; at sample_every=1 it is PROBE_MIN_STEPS steps, not 4."""
    from gradwatch.recording.recurrent import PROBE_DENSE, PROBE_EVERY, PROBE_MIN_STEPS

    for every, n in ((1, 2 * PROBE_MIN_STEPS + 10), (10, 10 * (PROBE_DENSE + 2 * PROBE_EVERY))):
        torch.manual_seed(4)
        model = _SeqModel(nn.RNN, batch_first=False)
        with gw.watch(model, sample_every=every, dense_steps=0, overhead=None) as w:
            for _ in range(n):
                tokens, targets = torch.randint(0, 11, (5, 2)), torch.randint(0, 11, (5, 2))
                logits, _ = model(tokens)
                _losses(logits, targets, False).sum().backward()
                w.step()
        expected, last = [], None
        for k, step in enumerate(range(0, n, every)):
            spaced = last is None or step - last >= PROBE_MIN_STEPS
            if k < PROBE_DENSE:
                expected.append(step)
            elif k % PROBE_EVERY == 0 and spaced:
                expected.append(step)
                last = step
        if every == 1:  # the dense first four, then every PROBE_MIN_STEPS (rounded to 4)
            assert expected == [0, 1, 2, 3, 4, 20, 36]
        else:  # every PROBE_EVERY-th sampled step, as without the minimum spacing
            assert expected == [0, 10, 20, 30, 40, 80]
        np.testing.assert_array_equal(
            w.trace.input_grad_profile("rnn", kind="last_position").steps, expected
        )
        np.testing.assert_array_equal(
            w.trace.input_grad_profile("rnn").steps, np.arange(0, n, every)
        )


def test_the_probe_skips_the_dense_starts_extra_samples() -> None:
    """Steps sampled only because of the dense start get the whole-loss profile, not the
    probe: it runs on the sample_every spacing (where short_memory reads it)."""
    torch.manual_seed(5)
    model = _SeqModel(nn.RNN, batch_first=False)
    with gw.watch(model, sample_every=5, dense_steps=8, overhead=None) as w:
        for _ in range(16):
            tokens, targets = torch.randint(0, 11, (5, 2)), torch.randint(0, 11, (5, 2))
            logits, _ = model(tokens)
            _losses(logits, targets, False).sum().backward()
            w.step()
    np.testing.assert_array_equal(
        w.trace.input_grad_profile("rnn", kind="last_position").steps, [0, 5, 10, 15]
    )
    whole = [*range(8), 10, 15]
    np.testing.assert_array_equal(w.trace.input_grad_profile("rnn").steps, whole)


def test_the_probe_reuses_the_steps_dropout_masks() -> None:
    """A 2-layer nn.RNN with dropout in training mode: the probe walks the step's own graph, so
    it matches autograd on the last position's output under the same random masks."""
    rnn = nn.RNN(3, 5, num_layers=2, dropout=0.4)
    head = nn.Linear(5, 1)
    x = torch.randn(8, 4, 3)
    torch.manual_seed(5)
    with gw.watch(rnn) as w:
        out, _ = rnn(x)
        head(out).square().sum().backward()
        w.step()
    torch.manual_seed(5)  # the same dropout masks
    xr = x.clone().requires_grad_(True)
    out, _ = rnn(xr)
    (g,) = torch.autograd.grad(head(out[-1]).square().sum(), xr)
    got = w.trace.input_grad_profile("", kind="last_position").values[0]
    np.testing.assert_allclose(got, _norm_per_t(g, False), rtol=1e-4)
