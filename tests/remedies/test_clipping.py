"""Clipping: equal to torch's on finite gradients, AGC equal to its formula, never NaN from inf,
and on-device statistics that match what happened."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import gradwatch as gw
from gradwatch.remedies import (
    GradientClipper,
    NonFiniteGradientError,
    clip_grad_adaptive_,
    clip_grad_norm_,
    clip_grad_value_,
    suggest_max_norm,
)
from gradwatch.trace import Trace


def _params_with_grads(seed: int, scale: float = 1.0) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 3), (5,), (4, 2, 3), (1,)]
    params = []
    for s in shapes:
        p = nn.Parameter(torch.randn(s, generator=g))
        p.grad = torch.randn(s, generator=g) * scale
        params.append(p)
    return params


def _clone(params: list[nn.Parameter]) -> list[nn.Parameter]:
    out = []
    for p in params:
        q = nn.Parameter(p.detach().clone())
        q.grad = p.grad.clone()  # type: ignore[union-attr]
        out.append(q)
    return out


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize(("seed", "max_norm"), [(0, 0.5), (1, 3.0), (2, 100.0)])
def test_clip_norm_equals_torch(seed: int, max_norm: float, norm_type: float) -> None:
    """On finite gradients the clipped gradients and total norm equal torch's exactly."""
    ours, ref = _params_with_grads(seed), None
    ref = _clone(ours)
    res = clip_grad_norm_(ours, max_norm, norm_type)
    total = torch.nn.utils.clip_grad_norm_(ref, max_norm, norm_type)
    assert torch.equal(res.total_norm, total)
    for a, b in zip(ours, ref, strict=True):
        assert torch.equal(a.grad, b.grad)  # type: ignore[arg-type]
    assert bool(res.clipped) == (float(total) + 1e-6 > max_norm)
    assert float(res.clip_coef) == pytest.approx(min(1.0, max_norm / (float(total) + 1e-6)))


@pytest.mark.parametrize("clip_value", [0.1, 0.7, 10.0])
def test_clip_value_equals_torch(clip_value: float) -> None:
    """On finite gradients value clipping equals torch's clip_grad_value_."""
    ours = _params_with_grads(3)
    ref = _clone(ours)
    res = clip_grad_value_(ours, clip_value)
    torch.nn.utils.clip_grad_value_(ref, clip_value)
    for a, b in zip(ours, ref, strict=True):
        assert torch.equal(a.grad, b.grad)  # type: ignore[arg-type]
    max_abs = max(float(p.grad.abs().max()) for p in ref)  # type: ignore[union-attr]
    raw_max = max(float(p.grad.abs().max()) for p in _params_with_grads(3))  # type: ignore[union-attr]
    assert bool(res.clipped) == (raw_max > clip_value)
    assert max_abs <= float(np.float32(clip_value))
    assert float(res.clip_coef) == pytest.approx(min(1.0, clip_value / raw_max))


def _agc_reference(w: np.ndarray, g: np.ndarray, lam: float, eps: float) -> np.ndarray:
    """AGC by hand in float64, one output unit (row) at a time; vectors are one unit."""
    w64, g64 = w.astype(np.float64), g.astype(np.float64)
    if w64.ndim <= 1:
        units_w, units_g = [w64.reshape(-1)], [g64.reshape(-1)]
    else:
        units_w = [w64[i].reshape(-1) for i in range(w64.shape[0])]
        units_g = [g64[i].reshape(-1) for i in range(g64.shape[0])]
    out = []
    for uw, ug in zip(units_w, units_g, strict=True):
        wn = max(math.sqrt(float(np.sum(uw * uw))), eps)
        gn = math.sqrt(float(np.sum(ug * ug)))
        out.append(ug * (lam * wn / gn) if gn / wn > lam else ug)
    return np.stack(out).reshape(g.shape)


@pytest.mark.parametrize(("lam", "eps"), [(0.01, 1e-3), (0.5, 1e-3), (0.3, 10.0)])
def test_agc_equals_its_formula_in_float64(lam: float, eps: float) -> None:
    """Each unit whose ||g|| / max(||w||, eps) exceeds lambda is rescaled to that ratio."""
    params = _params_with_grads(4, scale=0.6)
    expected = [
        _agc_reference(p.detach().numpy(), p.grad.numpy(), lam, eps)  # type: ignore[union-attr]
        for p in params
    ]
    res = clip_grad_adaptive_(params, clip_factor=lam, eps=eps)
    for p, want in zip(params, expected, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), want, rtol=1e-5, atol=1e-7)  # type: ignore[union-attr]
    raw = _params_with_grads(4, scale=0.6)
    any_clipped = any(
        not np.array_equal(w, p.grad.numpy())
        for w, p in zip(expected, raw, strict=True)  # type: ignore[union-attr]
    )
    assert bool(res.clipped) == any_clipped


@pytest.mark.parametrize(
    "clip",
    [
        lambda ps: clip_grad_norm_(ps, 1.0),
        lambda ps: clip_grad_norm_(ps, math.inf),
        lambda ps: clip_grad_value_(ps, 0.5),
        lambda ps: clip_grad_adaptive_(ps, 0.01),
    ],
    ids=["norm", "norm-inf-max", "value", "adaptive"],
)
@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_nonfinite_gradients_are_left_unchanged_and_flagged(clip, bad: float) -> None:  # type: ignore[no-untyped-def]
    """An inf/NaN gradient leaves every gradient as it was (no NaN made) and sets nonfinite."""
    params = _params_with_grads(5, scale=10.0)
    params[0].grad[0, 0] = bad  # type: ignore[index]
    before = [p.grad.clone() for p in params]  # type: ignore[union-attr]
    res = clip(params)
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p.grad.isnan(), b.isnan())  # type: ignore[union-attr]
        assert torch.equal(torch.nan_to_num(p.grad), torch.nan_to_num(b))  # type: ignore[arg-type]
    assert bool(res.nonfinite) and not bool(res.clipped) and float(res.clip_coef) == 1.0


def test_torch_turns_an_inf_gradient_into_nans_and_we_do_not() -> None:
    """The failure we guard against: torch's clip_grad_norm_ with an inf entry makes NaNs."""
    ref = _params_with_grads(6)
    ref[1].grad[0] = math.inf  # type: ignore[index]
    torch.nn.utils.clip_grad_norm_(ref, max_norm=1.0)
    assert any(bool(p.grad.isnan().any()) for p in ref)  # type: ignore[union-attr]
    ours = _params_with_grads(6)
    ours[1].grad[0] = math.inf  # type: ignore[index]
    clip_grad_norm_(ours, max_norm=1.0)
    assert not any(bool(p.grad.isnan().any()) for p in ours)  # type: ignore[union-attr]


def test_error_if_nonfinite_raises_before_changing_anything() -> None:
    """error_if_nonfinite=True raises NonFiniteGradientError and the gradients are untouched."""
    params = _params_with_grads(7)
    params[2].grad[0, 0, 0] = math.inf  # type: ignore[index]
    before = [p.grad.clone() for p in params]  # type: ignore[union-attr]
    with pytest.raises(NonFiniteGradientError, match="inf or NaN"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    assert all(torch.equal(p.grad, b) for p, b in zip(params, before, strict=True))  # type: ignore[arg-type]


def _train(
    model: nn.Module, opt: torch.optim.Optimizer, steps: int, scale: list[float]
) -> list[float]:
    """Train ``steps`` steps; returns the unclipped global norm of each step (reference)."""
    norms = []
    g = torch.Generator().manual_seed(0)
    for i in range(steps):
        x = torch.randn(8, 4, generator=g) * scale[i % len(scale)]
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        norms.append(
            float(
                torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))
            )  # type: ignore[union-attr]
        )
        opt.step()
    return norms


def test_clipper_records_each_step_and_the_fraction_clipped() -> None:
    """Attached to SGD, the clipper's per-step norms and flags match a reference recomputation."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    ref_model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    ref_model.load_state_dict(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    clipper = GradientClipper(model, mode="norm", max_norm=0.5).attach(opt)
    scales = [0.1, 5.0, 0.1, 8.0, 0.2, 0.1]
    norms = _train(model, opt, 6, scales)
    stats = clipper.stats()
    np.testing.assert_allclose(stats.total_norm, norms, rtol=1e-5)
    assert stats.clipped.tolist() == [n > 0.5 for n in norms]
    np.testing.assert_allclose(
        stats.clip_coef, [min(1.0, 0.5 / (n + 1e-6)) for n in norms], rtol=1e-5
    )
    assert stats.fraction_clipped == pytest.approx(np.mean([n > 0.5 for n in norms]))
    assert float(clipper.fraction_clipped) == pytest.approx(stats.fraction_clipped)
    # the training itself equals a manual loop with torch's clipping
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    for i in range(6):
        loss = ref_model(torch.randn(8, 4, generator=g) * scales[i]).pow(2).mean()
        ref_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref_model.parameters(), 0.5)
        ref_opt.step()
    for a, b in zip(model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    clipper.remove()
    _train(model, opt, 2, [10.0])
    assert clipper.stats().steps == 6  # removed: no more steps recorded


def test_clipper_grows_its_buffer() -> None:
    """More steps than the initial buffer (64) are all kept."""
    p = nn.Parameter(torch.zeros(3))
    clipper = GradientClipper([p], mode="value", clip_value=1.0)
    for i in range(70):
        p.grad = torch.full((3,), float(i % 3))
        clipper.clip_()
    stats = clipper.stats()
    assert stats.steps == 70
    assert stats.clipped.tolist() == [i % 3 == 2 for i in range(70)]


@pytest.mark.parametrize("watch_first", [True, False])
def test_clip_coef_and_clipped_are_logged_into_the_watch_at_the_right_step(
    watch_first: bool,
) -> None:
    """The watch's trace has clip_coef/clipped per step equal to the clipper's own record,
    whether the watch or the clipper was attached first."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scales = [0.1, 5.0, 0.1, 8.0]
    if watch_first:
        w = gw.watch(model, opt)
        clipper = GradientClipper(model, mode="norm", max_norm=0.5, watch=w).attach(opt)
    else:
        clipper = GradientClipper(model, mode="norm", max_norm=0.5)
        clipper.attach(opt)
        w = gw.watch(model, opt)
        clipper.watch = w
    _train(model, opt, 4, scales)
    clipper.remove()
    w.close()
    trace = w.trace
    stats = clipper.stats()
    np.testing.assert_allclose(trace.scalar("clip_coef"), stats.clip_coef, rtol=1e-6)
    assert (trace.scalar("clipped") > 0.5).tolist() == stats.clipped.tolist()


def test_clipper_validates_its_arguments() -> None:
    """Missing max_norm/clip_value, bad mode, and a non-Watch watch raise clear errors."""
    m = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="max_norm"):
        GradientClipper(m, mode="norm")
    with pytest.raises(ValueError, match="clip_value"):
        GradientClipper(m, mode="value")
    with pytest.raises(ValueError, match="mode"):
        GradientClipper(m, mode="global")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_norm"):
        GradientClipper(m, mode="norm", max_norm=-1.0)
    with pytest.raises(TypeError, match="Watch"):
        GradientClipper(m, mode="norm", max_norm=1.0, watch=object())


def _trace_with_norms(norms: list[float], skipped: list[float] | None = None) -> Trace:
    n = len(norms)
    scalars = {"global_grad_norm": np.array(norms, dtype=float)}
    if skipped is not None:
        scalars["skipped"] = np.array(skipped, dtype=float)
    return Trace.from_arrays(["l0"], range(n), {"grad_rms": np.ones((n, 1))}, scalars=scalars)


def test_suggest_max_norm_is_the_quantile_of_finite_norms() -> None:
    """Default: the 0.9 quantile of the finite, non-skipped norms; inf and skipped steps dropped."""
    rng = np.random.default_rng(0)
    norms = list(rng.lognormal(0.0, 1.0, size=200))
    with_bad = [*norms, math.inf, math.nan, 1e9]
    skipped = [0.0] * 200 + [0.0, 0.0, 1.0]  # the 1e9 step was skipped by GradScaler
    s = suggest_max_norm(_trace_with_norms(with_bad, skipped))
    assert float(s) == pytest.approx(float(np.quantile(norms, 0.9)))
    assert s.finite_steps == 200 and s.nonfinite_steps == 1  # NaN = not measured, inf = bad
    assert "90% quantile" in s.reason and "non-finite" in s.reason
    m = suggest_max_norm(_trace_with_norms(norms), method="median", k=2.0)
    assert float(m) == pytest.approx(2.0 * float(np.median(norms)))


def test_suggest_max_norm_needs_enough_steps() -> None:
    """Fewer than 5 finite norms: a ValueError that says to record more steps."""
    with pytest.raises(ValueError, match="at least 5"):
        suggest_max_norm(_trace_with_norms([1.0, 2.0, math.inf]))
    with pytest.raises(ValueError, match="`q`"):
        suggest_max_norm(_trace_with_norms([1.0] * 10), q=1.5)


_finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
_entry = st.one_of(_finite, st.sampled_from([math.inf, -math.inf, math.nan]))


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(_finite, min_size=1, max_size=40),
    max_norm=st.floats(1e-3, 1e3),
)
def test_property_norm_clipping_equals_torch_and_bounds_the_norm(
    values: list[float], max_norm: float
) -> None:
    """For any finite gradients: identical to torch, and the clipped norm is <= max_norm."""
    p, q = nn.Parameter(torch.zeros(len(values))), nn.Parameter(torch.zeros(len(values)))
    p.grad, q.grad = torch.tensor(values), torch.tensor(values)
    clip_grad_norm_([p], max_norm)
    torch.nn.utils.clip_grad_norm_([q], max_norm)
    assert torch.equal(p.grad, q.grad)
    assert float(torch.linalg.vector_norm(p.grad.double())) <= max_norm * (1 + 1e-5)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(_entry, min_size=1, max_size=30),
    mode=st.sampled_from(["norm", "value", "adaptive"]),
)
def test_property_clipping_never_creates_nan(values: list[float], mode: str) -> None:
    """Whatever the gradients, a NaN appears only where there was one before."""
    p = nn.Parameter(torch.ones(len(values)))
    p.grad = torch.tensor(values)
    had_nan = p.grad.isnan().clone()
    clipper = GradientClipper([p], mode=mode, max_norm=1.0, clip_value=1.0)  # type: ignore[arg-type]
    clipper.clip_()
    assert torch.equal(p.grad.isnan(), had_nan)
