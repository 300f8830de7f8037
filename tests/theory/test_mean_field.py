"""Mean-field predictions against closed forms, brute-force integrals and wide random nets.

Tolerances were written before the values were measured.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradwatch import theory
from gradwatch.theory import chi_1, critical_sigma_w, mean_field

# --------------------------------------------------------------------------- references


def _torch_reference(name: str):
    """torch's own activation, an implementation independent of gradwatch's numpy formulas."""
    return {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "leaky_relu": F.leaky_relu,
        "elu": F.elu,
        "selu": F.selu,
        "swish": F.silu,
        "gelu": F.gelu,
    }[name]


def _brute_force(name: str, sigma_w: float, sigma_b: float) -> tuple[float, float]:
    """q* and chi_1 by plain iteration with a fine midpoint rule (float64).

    0 is a cell edge, so no node sits on the kink of ReLU-like activations.
    """
    fn = _torch_reference(name)

    def moments(q: float) -> tuple[float, float]:
        s = math.sqrt(q)
        n = 200_000
        h = 24 * s / n
        x = (-12 * s + (torch.arange(n, dtype=torch.float64) + 0.5) * h).requires_grad_(True)
        y = fn(x)
        (dy,) = torch.autograd.grad(y.sum(), x)
        w = h * torch.exp(-0.5 * x.detach() ** 2 / q) / math.sqrt(2 * math.pi * q)
        return float((y.detach() ** 2 * w).sum()), float((dy**2 * w).sum())

    q = 1.0
    for _ in range(300):
        q_new = sigma_w**2 * moments(q)[0] + sigma_b**2
        if abs(q_new - q) < 1e-13 * q_new:
            break
        q = q_new
    return q, sigma_w**2 * moments(q)[1]


def _measured_chi(
    sigma_w2: float,
    sigma_b2: float,
    *,
    width: int,
    depth: int,
    batch: int,
    seeds: tuple[int, ...],
    skip: int,
) -> float:
    """Per-layer factor of the mean squared dL/dh in wide random tanh MLPs (autograd)."""
    mean_sq = np.zeros(depth)
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, width, generator=g, dtype=torch.float64, requires_grad=True)
        a, hs = x, []
        for _ in range(depth):
            w = torch.randn(width, width, generator=g, dtype=torch.float64)
            b = torch.randn(width, generator=g, dtype=torch.float64)
            h = a @ (w * math.sqrt(sigma_w2 / width)).T + b * math.sqrt(sigma_b2)
            hs.append(h)
            a = torch.tanh(h)
        r = torch.randn(a.shape, generator=g, dtype=torch.float64)
        grads = torch.autograd.grad((a * r).sum(), hs)
        mean_sq += np.array([float(gr.square().mean()) for gr in grads]) / len(seeds)
    # Ratio of consecutive layers, geometric mean over the layers after the transient:
    # E|dL/dh_l|^2 / E|dL/dh_{l+1}|^2 for l = skip .. depth-2.
    last = depth - 1
    return float((mean_sq[skip] / mean_sq[last]) ** (1.0 / (last - skip)))


# --------------------------------------------------------------------------- chi_1 vs nets


SIGMA_W2 = (0.5, 1.0, 1.5, 2.0, 3.0)


@pytest.mark.slow
@pytest.mark.parametrize("sigma_w2", SIGMA_W2)
def test_tanh_chi1_predicts_wide_mlp_gradient_factor(sigma_w2: float) -> None:
    """chi_1 of tanh (sigma_b^2 = 0.05) is the per-layer factor of E|dL/dh|^2 within 5%."""
    predicted = mean_field("tanh", math.sqrt(sigma_w2), math.sqrt(0.05)).chi_1
    measured = _measured_chi(
        sigma_w2, 0.05, width=512, depth=24, batch=16, seeds=(0, 1, 2, 3), skip=6
    )
    assert abs(measured / predicted - 1) <= 0.05, (sigma_w2, predicted, measured)


@pytest.mark.parametrize("sigma_w2", SIGMA_W2)
def test_tanh_chi1_predicts_wide_mlp_gradient_factor_fast(sigma_w2: float) -> None:
    """Fast variant of the 5% test: width 512, fewer layers and seeds, 8% tolerance."""
    predicted = mean_field("tanh", math.sqrt(sigma_w2), math.sqrt(0.05)).chi_1
    measured = _measured_chi(sigma_w2, 0.05, width=512, depth=14, batch=8, seeds=(0, 1), skip=5)
    assert abs(measured / predicted - 1) <= 0.08, (sigma_w2, predicted, measured)


def test_tanh_chi1_values_of_the_issue() -> None:
    """The chi_1 values quoted in issue 7 (0.432/0.759/0.939/1.048/1.209) are reproduced."""
    got = [mean_field("tanh", math.sqrt(s2), math.sqrt(0.05)).chi_1 for s2 in SIGMA_W2]
    assert got == pytest.approx([0.432, 0.759, 0.939, 1.048, 1.209], abs=6e-4)


# --------------------------------------------------------------------------- closed forms


def test_relu_he_init_is_exactly_critical() -> None:
    """ReLU with He init (sigma_w = sqrt 2, sigma_b = 0) has chi_1 = 1 and q* = q_init."""
    r = mean_field("relu", math.sqrt(2.0), 0.0)
    assert abs(r.chi_1 - 1.0) <= 1e-6
    assert r.phase == "critical"
    assert math.isinf(r.depth_scale) and math.isinf(r.trainable_depth)
    assert r.q_star == pytest.approx(1.0, abs=1e-9)


def test_leaky_relu_he_init_is_critical() -> None:
    """Leaky ReLU with sigma_w^2 = 2 / (1 + a^2) has chi_1 = 1 (closed form)."""
    a = 0.01
    assert chi_1("leaky_relu", math.sqrt(2 / (1 + a * a))) == pytest.approx(1.0, abs=1e-6)


def test_relu_chi1_is_half_sigma_w_squared() -> None:
    """For ReLU chi_1 = sigma_w^2 / 2 whatever sigma_b (phi'^2 is 1 on half the line)."""
    for sw, sb in [(1.0, 0.0), (1.2, 0.3), (2.0, 0.1)]:
        assert chi_1("relu", sw, sb) == pytest.approx(sw * sw / 2, rel=1e-9)


def test_selu_lecun_fixed_point_is_mean_zero_variance_one() -> None:
    """SELU at LeCun init (sigma_w = 1, sigma_b = 0) converges to q* = 1 with mean 0."""
    r = mean_field("selu", 1.0, 0.0, q_init=3.0)
    assert r.converged
    assert r.q_star == pytest.approx(1.0, abs=1e-6)
    assert abs(r.act_mean) <= 1e-6
    assert r.act_second_moment == pytest.approx(1.0, abs=1e-6)


def test_ordered_phase_depth_scale_is_minus_inverse_log_chi1() -> None:
    """In the ordered phase xi = -1/ln(chi_1), trainable depth 6 xi, ratio chi_1^L."""
    r = mean_field("tanh", 1.0, 0.3)
    assert r.phase == "ordered" and r.c_star == 1.0
    assert r.depth_scale == pytest.approx(-1 / math.log(r.chi_1), rel=1e-12)
    assert r.gradient_depth_scale == pytest.approx(r.depth_scale, rel=1e-12)
    assert r.trainable_depth == pytest.approx(6 * r.depth_scale, rel=1e-12)
    assert r.gradient_ratio(30) == pytest.approx(r.chi_1**30, rel=1e-12)
    assert r.norm_ratio(30) == pytest.approx(r.chi_1**15, rel=1e-12)
    prof = r.norm_profile(4)
    assert prof == pytest.approx([r.chi_1**1.5, r.chi_1, r.chi_1**0.5, 1.0], rel=1e-12)


def test_tanh_without_bias_is_linear_regime_below_one() -> None:
    """tanh with sigma_b = 0 and sigma_w < 1 has q* = 0 and chi_1 = sigma_w^2 (linearised)."""
    r = mean_field("tanh", 0.9, 0.0)
    assert r.q_star == 0.0
    assert r.chi_1 == pytest.approx(0.81, abs=1e-9)


# --------------------------------------------------------------------------- quadrature


@pytest.mark.parametrize(
    ("name", "sigma_w", "sigma_b"),
    [
        ("sigmoid", 4.0, 0.1),
        ("tanh", 1.3, 0.2),
        ("relu", 1.2, 0.2),
        ("leaky_relu", 1.3, 0.1),
        ("elu", 1.2, 0.3),
        ("selu", 1.0, 0.0),
        ("swish", 1.2, 0.5),
        ("gelu", 1.3, 0.5),
    ],
)
def test_fixed_point_and_chi1_match_brute_force(name: str, sigma_w: float, sigma_b: float) -> None:
    """q* and chi_1 agree with a fine trapezoid rule over torch's own activation (1e-6)."""
    q_ref, chi_ref = _brute_force(name, sigma_w, sigma_b)
    r = mean_field(name, sigma_w, sigma_b)
    assert r.q_star == pytest.approx(q_ref, rel=1e-6)
    assert r.chi_1 == pytest.approx(chi_ref, rel=1e-6)


def test_hermite_rule_agrees_with_panels_for_smooth_activations() -> None:
    """Gauss-Hermite (hermegauss) and the panel rule agree for tanh at moderate q."""
    for s2 in SIGMA_W2:
        a = mean_field("tanh", math.sqrt(s2), math.sqrt(0.05), quadrature="hermite")
        b = mean_field("tanh", math.sqrt(s2), math.sqrt(0.05))
        assert a.chi_1 == pytest.approx(b.chi_1, rel=1e-6)
        assert a.q_star == pytest.approx(b.q_star, rel=1e-6)


def test_panel_rule_survives_large_variance_where_hermite_fails() -> None:
    """For sigmoid at sigma_w = 100 (q* ~ 5000) the panel rule matches brute force."""
    _, chi_ref = _brute_force("sigmoid", 100.0, 0.0)
    assert mean_field("sigmoid", 100.0).chi_1 == pytest.approx(chi_ref, rel=1e-5)


# --------------------------------------------------------------------------- chaotic phase


def test_chaotic_tanh_correlation_fixed_point_matches_fine_quadrature() -> None:
    """c* and chi_c of tanh at sigma_w^2 = 3 match a 160 x 160 Gauss-Hermite iteration."""
    r = mean_field("tanh", math.sqrt(3.0), math.sqrt(0.05))
    assert r.phase == "chaotic" and r.c_star < 1 and r.chi_c < 1
    assert r.depth_scale == pytest.approx(-1 / math.log(r.chi_c), rel=1e-12)
    z, w = np.polynomial.hermite_e.hermegauss(160)
    w = w / w.sum()
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    ww = np.outer(w, w)
    q, c = r.q_star, 0.9
    for _ in range(400):  # plain iteration: contracts by chi_c ~ 0.9 per step
        u1 = math.sqrt(q) * z1
        u2 = math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
        c = (3.0 * float(np.sum(ww * np.tanh(u1) * np.tanh(u2))) + 0.05) / q
    chi_c = 3.0 * float(np.sum(ww * (1 - np.tanh(u1) ** 2) * (1 - np.tanh(u2) ** 2)))
    assert c == pytest.approx(r.c_star, abs=1e-6)
    assert chi_c == pytest.approx(r.chi_c, abs=1e-6)


def test_unbounded_variance_is_reported_as_infinite() -> None:
    """ReLU with sigma_w = 2 has no finite q*: q* = inf, chi_1 = 2, gradients explode."""
    r = mean_field("relu", 2.0)
    assert math.isinf(r.q_star) and not r.converged
    assert r.chi_1 == pytest.approx(2.0, rel=1e-9)
    assert r.phase == "chaotic"
    assert r.gradient_depth_scale == pytest.approx(1 / math.log(2.0), rel=1e-9)


# --------------------------------------------------------------------------- critical line


def test_critical_sigma_w_closed_forms() -> None:
    """The boundary is sqrt(2) for ReLU and 1 for tanh without bias (linearisation)."""
    assert critical_sigma_w("relu") == pytest.approx(math.sqrt(2.0), rel=1e-8)
    assert critical_sigma_w("tanh", 0.0) == pytest.approx(1.0, abs=1e-6)


def test_critical_sigma_w_separates_the_phases() -> None:
    """At the returned sigma_w chi_1 = 1; just below it is ordered, just above chaotic."""
    sb = math.sqrt(0.05)
    s = critical_sigma_w("tanh", sb)
    assert 1.5 < s * s < 2.0  # chi_1 is 0.939 at sigma_w^2 = 1.5 and 1.048 at 2
    assert chi_1("tanh", s, sb) == pytest.approx(1.0, abs=1e-8)
    assert mean_field("tanh", 0.99 * s, sb).phase == "ordered"
    assert mean_field("tanh", 1.01 * s, sb).phase == "chaotic"


def test_critical_sigma_w_reports_a_jump() -> None:
    """GELU without bias jumps across chi_1 = 1 (q* switches branch): a clear error."""
    with pytest.raises(ValueError, match="jumps"):
        critical_sigma_w("gelu", 0.0)


# --------------------------------------------------------------------------- activations


def test_callable_activations_match_named_ones() -> None:
    """torch callables (autograd) and numpy ones (finite differences) give the same chi_1."""
    ref = mean_field("tanh", 1.1, 0.3).chi_1  # ordered: no 2-D correlation map to iterate
    assert mean_field(torch.tanh, 1.1, 0.3).chi_1 == pytest.approx(ref, rel=1e-10)
    assert mean_field(np.tanh, 1.1, 0.3).chi_1 == pytest.approx(ref, rel=1e-7)
    ref_gelu = mean_field("gelu", 1.3, 0.5).chi_1
    assert mean_field(torch.nn.GELU(), 1.3, 0.5).chi_1 == pytest.approx(ref_gelu, rel=1e-10)
    leaky = mean_field(torch.nn.LeakyReLU(0.2), 1.0, 0.0).chi_1
    assert leaky == pytest.approx((1 + 0.04) / 2, rel=1e-9)


def test_activation_names_accept_torch_class_names() -> None:
    """Class names as recorded in LayerInfo.activation ("LeakyReLU", "SiLU") resolve."""
    assert theory.resolve_activation("LeakyReLU").name == "leaky_relu"
    assert theory.resolve_activation("SiLU").name == "swish"
    assert theory.resolve_activation("Tanh").name == "tanh"


# --------------------------------------------------------------------------- bad input


def test_bad_arguments_name_the_argument_and_the_fix() -> None:
    """Negative sigmas, unknown names and non-elementwise callables are clear errors."""
    with pytest.raises(ValueError, match=r"sigma_w must be finite and > 0, got -1"):
        mean_field("tanh", -1.0)
    with pytest.raises(ValueError, match=r"sigma_b must be finite and >= 0"):
        mean_field("tanh", 1.0, -0.1)
    with pytest.raises(ValueError, match=r"unknown activation 'softsign'.*tanh"):
        mean_field("softsign", 1.0)
    with pytest.raises(ValueError, match="elementwise"):
        mean_field(lambda x: x.sum(), 1.0)
    with pytest.raises(TypeError, match="activation must be a name or a callable"):
        mean_field(3, 1.0)  # type: ignore[arg-type]


def test_result_serialises_infinities() -> None:
    """to_dict turns inf into a string, so the result is valid JSON."""
    import json

    d = mean_field("relu", math.sqrt(2.0)).to_dict()
    assert d["depth_scale"] == "inf"
    json.dumps(d, allow_nan=False)


def test_chi_c_predicts_how_fast_recorded_inputs_collapse() -> None:
    """In the ordered phase the share of a layer's variance that differs between inputs,
    as gw.watch records it (act_between_inputs), shrinks by chi_c per layer: tanh at
    sigma_w^2 = 0.5, sigma_b^2 = 0.05 (chi_c 0.432), width 256, layers 4 to 12 of 16, two
    seeds, within 10% (benchmarks/theory_check.py measures width 512 and 24 layers)."""
    import importlib.util
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "benchmarks"
    sys.path.insert(0, str(bench))  # theory_check imports its sibling _docs
    try:
        spec = importlib.util.spec_from_file_location("theory_check", bench / "theory_check.py")
        assert spec is not None and spec.loader is not None
        check = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(check)
    finally:
        sys.path.remove(str(bench))
    predicted = mean_field("tanh", math.sqrt(0.5), math.sqrt(0.05)).chi_c
    measured, _ = check.measured_chi_c(
        "tanh", 0.5, 0.05, width=256, depth=16, seeds=2, layers=(4, 12)
    )
    assert abs(measured / predicted - 1) <= 0.10, (predicted, measured)
