"""The chain-rule walk: predicted gains vs autograd, traces, and the sentence a user reads.

Tolerances were written before the values were measured.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gradwatch as gw
from gradwatch.theory import explain, explain_trace
from gradwatch.theory.chain_rule import sentence
from gradwatch.trace import LayerInfo, Trace


def _sigmoid_mlp(depth: int, width: int, seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)  # PyTorch's default nn.Linear init
    mods: list[torch.nn.Module] = []
    for _ in range(depth):
        mods += [torch.nn.Linear(width, width), torch.nn.Sigmoid()]
    return torch.nn.Sequential(*mods)


def _reference_norms(net: torch.nn.Sequential, x: torch.Tensor) -> list[float]:
    """||dL/dh_l|| by hand: the layers applied one by one, the documented projection loss."""
    hs, a = [], x
    for mod in net:
        a = mod(a)
        if isinstance(mod, torch.nn.Linear):
            hs.append(a)
    r = torch.randn(a.shape, generator=torch.Generator().manual_seed(0), dtype=a.dtype)
    grads = torch.autograd.grad((a * r).sum() / a.shape[0], hs)
    return [float(g.double().norm()) for g in grads]


def test_chain_rule_product_predicts_deep_sigmoid_gradient_ratio() -> None:
    """For a 20-layer sigmoid MLP at init, |log10 pred - log10 meas| <= 0.2 |log10 meas|."""
    net = _sigmoid_mlp(20, 64, seed=0)
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(1))
    ref = _reference_norms(net, x)
    measured = ref[0] / ref[-1]
    walk = explain(net, x)
    assert walk.measured_ratio == pytest.approx(measured, rel=1e-4)
    assert walk.predicted_ratio is not None
    assert measured < 1e-8  # the deep sigmoid net really does vanish
    err = abs(math.log10(walk.predicted_ratio) - math.log10(measured))
    assert err <= 0.2 * abs(math.log10(measured))
    assert len(walk.rows) == 20 and all(r.chain for r in walk.rows[:-1])


def test_rows_hold_the_factors_of_the_chain_rule() -> None:
    """Weight scale = ||W||_F/sqrt(fan_out), rms phi' from sigmoid(h)(1-sigmoid(h)) by hand."""
    net = _sigmoid_mlp(3, 16, seed=2)
    x = torch.randn(32, 16)
    walk = explain(net, x)
    h0 = net[0](x).detach().double()
    s = torch.sigmoid(h0)
    dphi = s * (1 - s)
    row = walk.rows[0]
    w1 = net[2].weight.detach().double()
    assert row.weight_scale == pytest.approx(float(w1.norm() / 4.0), rel=1e-9)
    assert row.rms_dphi == pytest.approx(float(dphi.square().mean().sqrt()), rel=1e-5)
    assert row.mean_abs_dphi == pytest.approx(float(dphi.abs().mean()), rel=1e-5)
    assert row.predicted_gain == pytest.approx(row.weight_scale * row.rms_dphi, rel=1e-12)
    assert walk.rows[-1].measured_gain is None and walk.rows[-1].predicted_ratio == 1.0
    assert walk.rows[0].predicted_ratio == pytest.approx(
        walk.rows[0].predicted_gain * walk.rows[1].predicted_gain, rel=1e-12
    )
    norms = _reference_norms(net, x)
    assert [r.grad_norm for r in walk.rows] == pytest.approx(norms, rel=1e-5)
    assert walk.rows[0].measured_gain == pytest.approx(norms[0] / norms[1], rel=1e-5)


def test_explain_leaves_the_model_untouched() -> None:
    """No .grad written, parameters unchanged, hooks removed, training mode kept."""
    net = _sigmoid_mlp(3, 8, seed=0)
    net.eval()
    before = [p.detach().clone() for p in net.parameters()]
    explain(net, torch.randn(4, 8))
    assert not net.training
    for mod in net.modules():
        assert not mod._forward_hooks and not mod._forward_pre_hooks
    for p, b in zip(net.parameters(), before, strict=True):
        assert p.grad is None and torch.equal(p, b)


def test_inplace_activation_gives_the_same_walk() -> None:
    """ReLU(inplace=True) cannot corrupt the captured outputs: same rows as ReLU()."""
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8))
    b = torch.nn.Sequential(
        torch.nn.Linear(8, 8), torch.nn.ReLU(inplace=True), torch.nn.Linear(8, 8)
    )
    b.load_state_dict(a.state_dict())
    x = torch.randn(16, 8)
    wa, wb = explain(a, x), explain(b, x)
    for ra, rb in zip(wa.rows, wb.rows, strict=True):
        assert ra.grad_norm == pytest.approx(rb.grad_norm, rel=1e-6)
        assert ra.rms_dphi == rb.rms_dphi or ra.rms_dphi == pytest.approx(rb.rms_dphi)


class _Residual(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 8)
        self.b = torch.nn.Linear(8, 8)
        self.c = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        return self.c(h + torch.tanh(self.b(torch.tanh(h))))


def test_skip_connection_is_flagged_as_not_a_chain() -> None:
    """Where a skip connection adds a path, the row says chain=False."""
    walk = explain(_Residual(), torch.randn(4, 8))
    assert walk.rows[0].chain is False
    assert walk.rows[1].chain is True


def test_explicit_loss_and_targets() -> None:
    """(x, y) batches use cross-entropy for class targets or the loss_fn given."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    walk = explain(net, (x, y))
    h = [net[0](x)]
    out = net[2](torch.tanh(h[0]))
    hs = [h[0], out]
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(out, y), hs)
    assert walk.rows[0].grad_norm == pytest.approx(float(grads[0].norm()), rel=1e-5)
    walk2 = explain(net, (x, y), loss_fn=lambda o, t: torch.nn.functional.cross_entropy(o, t) * 2)
    assert walk2.rows[0].grad_norm == pytest.approx(2 * walk.rows[0].grad_norm, rel=1e-6)


def test_model_errors_are_clear() -> None:
    """No batch, one layer, or a layer run twice: ValueError saying what to do."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())
    with pytest.raises(ValueError, match="needs a batch"):
        explain(net)
    with pytest.raises(ValueError, match="at least two layers"):
        explain(net, torch.randn(2, 4))
    lin = torch.nn.Linear(4, 4)
    twice = torch.nn.Sequential(lin, torch.nn.Tanh(), lin)
    with pytest.raises(ValueError, match="ran twice"):
        explain(twice, torch.randn(2, 4))
    assert not lin._forward_hooks  # removed even after the error


# --------------------------------------------------------------------------- trace


def test_trace_walk_uses_consecutive_ratios() -> None:
    """From a trace: gain = value_l / value_{l+1}, running ratio to the last layer."""
    vals = np.array([[1e-6, 1e-4, 1e-2, 1.0], [2e-6, 2e-4, 2e-2, 2.0]])
    t = Trace.from_arrays(["a", "b", "c", "d"], steps=[0, 10], metrics={"out_grad_norm": vals})
    walk = explain_trace(t)
    assert walk.step == 0 and walk.metric == "out_grad_norm" and walk.source == "trace"
    assert [r.measured_gain for r in walk.rows[:-1]] == pytest.approx([0.01] * 3)
    assert walk.measured_ratio == pytest.approx(1e-6)
    assert walk.collapse_layer == 1  # layer "b" is the nearest to the output below 1e-3
    assert "0.01" in walk.sentence and "1e-06" in walk.sentence
    assert explain_trace(t, step=9).step == 10  # nearest measured step
    assert explain(t).rows == walk.rows  # explain() dispatches on a Trace


def test_trace_walk_carries_the_share_between_inputs_of_the_nearest_step() -> None:
    """Where the trace recorded act_between_inputs, each row carries it, from the measured
    step nearest the walk's (its own NaN rows are not measurements); without it, None."""
    grads = np.array([[1e-3, 1e-2, 1.0], [1e-3, 1e-2, 1.0], [1e-3, 1e-2, 1.0]])
    share = np.array([[0.9, 0.1, np.nan], [np.nan] * 3, [0.8, 0.01, 0.001]])
    metrics = {"out_grad_norm": grads, "act_between_inputs": share}
    t = Trace.from_arrays(["a", "b", "c"], steps=[0, 5, 10], metrics=metrics)
    assert [r.between_inputs for r in explain_trace(t, step=0).rows] == [0.9, 0.1, None]
    assert [r.between_inputs for r in explain_trace(t, step=10).rows] == pytest.approx(
        [0.8, 0.01, 0.001]
    )
    # step 5 has no share measured: the nearest measured step (0, before 10) is used.
    assert [r.between_inputs for r in explain_trace(t, step=5).rows][:2] == [0.9, 0.1]
    plain = Trace.from_arrays(["a", "b", "c"], steps=[0], metrics={"out_grad_norm": grads[:1]})
    assert all(r.between_inputs is None for r in explain_trace(plain).rows)


def test_trace_walk_falls_back_to_grad_rms_and_skips_missing_layers() -> None:
    """Without out_grad_norm the walk uses grad_rms; NaN layers are left out."""
    vals = np.array([[0.5, np.nan, 2.0, 4.0]])
    t = Trace.from_arrays(["a", "b", "c", "d"], steps=[0], metrics={"grad_rms": vals})
    walk = explain_trace(t)
    assert walk.metric == "grad_rms"
    assert [r.name for r in walk.rows] == ["a", "c", "d"]
    assert walk.measured_ratio == pytest.approx(0.125)
    empty = Trace.from_arrays(["a"], steps=[0], metrics={"weight_norm": [[1.0]]})
    with pytest.raises(KeyError, match="no out_grad_norm or grad_rms"):
        explain_trace(empty)


def test_recorded_trace_walk_matches_the_model_walk() -> None:
    """A trace recorded by gw.watch at step 0 gives the same ratios as explain(model)."""
    net = _sigmoid_mlp(6, 16, seed=3)
    x, y = torch.randn(32, 16), torch.randn(32, 16)
    model_walk = explain(net, (x, y))  # MSE against y, at initialisation
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with gw.watch(net, opt, sample_every=1) as w:
        loss = torch.nn.functional.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    walk = explain_trace(w.trace, step=0)
    assert walk.metric == "out_grad_norm"
    got = [r.measured_ratio for r in walk.rows]
    want = [r.measured_ratio for r in model_walk.rows]
    assert got == pytest.approx(want, rel=1e-3)


# --------------------------------------------------------------------------- sentence


def test_sentence_for_explosion_and_mixed_gains() -> None:
    """Growing gains say 'times larger'; uneven gains name the smallest and largest."""
    grow = sentence([3.0] * 5, 3.0**5)
    assert "each multiply the gradient by about 3" in grow and "243 times larger" in grow
    mixed = sentence([0.1, 3.0, 0.5, 2.0, 1.0], 0.3)
    assert "varies from 0.1 (layer 2) to 3 (layer 3)" in mixed
    assert sentence([], 1.0).startswith("There is only one layer")


def test_sentence_quotes_prediction_and_cause() -> None:
    """With a prediction and the two factors, the sentence names them."""
    text = sentence([0.14] * 19, 2e-16, predicted=6e-17, weight_scale=0.58, rms_dphi=0.24)
    assert "(the chain rule predicts 6e-17)" in text
    assert "weight scale (about 0.58)" in text and "derivative (about 0.24)" in text


def test_layerinfo_trace_names_survive() -> None:
    """Row names come from the trace's layer table."""
    layers = [LayerInfo(name=f"fc{i}", type="Linear", depth=i, num_params=1) for i in range(3)]
    t = Trace.from_arrays(layers, steps=[0], metrics={"out_grad_norm": [[0.1, 0.5, 1.0]]})
    assert [r.name for r in explain_trace(t).rows] == ["fc0", "fc1", "fc2"]
