"""Input-output Jacobian spectra: exact SVD, estimates, and dynamical isometry.

Tolerances were written before the values were measured.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradwatch.theory import critical_sigma_w, jacobian_spectrum, mean_field


def _mlp(
    depth: int,
    width: int,
    act: type[torch.nn.Module],
    sigma_w: float,
    sigma_b: float,
    *,
    orthogonal: bool,
    seed: int,
) -> torch.nn.Sequential:
    """[Linear, act] x depth with W = sigma_w x (orthogonal | N(0, 1/width)), b ~ N(0, sb^2)."""
    g = torch.Generator().manual_seed(seed)
    mods: list[torch.nn.Module] = []
    for _ in range(depth):
        lin = torch.nn.Linear(width, width)
        with torch.no_grad():
            if orthogonal:
                q, r = torch.linalg.qr(torch.randn(width, width, generator=g))
                lin.weight.copy_(sigma_w * q * torch.sign(torch.diagonal(r)))
            else:
                lin.weight.copy_(
                    torch.randn(width, width, generator=g) * sigma_w / math.sqrt(width)
                )
            lin.bias.copy_(torch.randn(width, generator=g) * sigma_b)
        mods += [lin, act()]
    return torch.nn.Sequential(*mods)


def test_exact_spectrum_matches_hand_built_jacobian() -> None:
    """Exact singular values equal those of W2 diag(tanh'(W1 x + b1)) W1 (float64 by hand)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4))
    x = torch.randn(3, 6)
    spec = jacobian_spectrum(net, x, method="exact")
    w1, b1 = net[0].weight.double(), net[0].bias.double()
    w2 = net[2].weight.double()
    for i in range(3):
        d = 1 - torch.tanh(w1 @ x[i].double() + b1) ** 2
        ref = torch.linalg.svdvals(w2 @ torch.diag(d) @ w1).detach().numpy()
        assert spec.singular_values is not None
        np.testing.assert_allclose(spec.singular_values[i], ref, rtol=1e-5, atol=1e-7)
    assert spec.in_dim == 6 and spec.out_dim == 4 and spec.n_examples == 3


def test_identity_is_perfectly_isometric() -> None:
    """A linear layer with W = I has every singular value 1: mean 1, spread 0, max/median 1."""
    net = torch.nn.Linear(8, 8, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(8))
    spec = jacobian_spectrum(net, torch.randn(4, 8))
    assert spec.method == "exact"
    assert spec.mean_sq == pytest.approx(1.0, abs=1e-6)
    assert spec.var_sq == pytest.approx(0.0, abs=1e-6)
    assert spec.max_over_median == pytest.approx(1.0, abs=1e-6)


def test_estimates_agree_with_exact_spectrum() -> None:
    """Hutchinson and power iteration agree with the SVD: mean 5%, variance 15%, max 1%."""
    net = _mlp(4, 32, torch.nn.Tanh, 1.2, 0.1, orthogonal=False, seed=1)
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(2))
    exact = jacobian_spectrum(net, x, method="exact")
    est = jacobian_spectrum(net, x, method="estimate", n_probes=64, n_iter=100)
    assert est.method == "estimate" and est.singular_values is None and est.median_sv is None
    assert est.mean_sq == pytest.approx(exact.mean_sq, rel=0.05)
    assert est.var_sq == pytest.approx(exact.var_sq, rel=0.15)
    assert est.max_sv == pytest.approx(exact.max_sv, rel=0.01)


def test_estimates_handle_rectangular_jacobians() -> None:
    """For a 32 -> 8 model the estimate divides by min(in, out) like the exact spectrum."""
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    x = torch.randn(8, 32)
    exact = jacobian_spectrum(net, x, method="exact")
    est = jacobian_spectrum(net, x, method="estimate", n_probes=64)
    assert est.mean_sq == pytest.approx(exact.mean_sq, rel=0.05)
    assert est.max_sv == pytest.approx(exact.max_sv, rel=0.01)


def test_spectrum_leaves_model_and_global_rng_alone() -> None:
    """Neither method writes .grad, changes parameters or draws from the global RNG."""
    net = _mlp(2, 16, torch.nn.Tanh, 1.0, 0.1, orthogonal=False, seed=0)
    before = [p.detach().clone() for p in net.parameters()]
    x = torch.randn(4, 16)
    state = torch.random.get_rng_state()
    jacobian_spectrum(net, x, method="exact")
    jacobian_spectrum(net, x, method="estimate", n_probes=4, n_iter=4)
    assert torch.equal(state, torch.random.get_rng_state())
    for p, b in zip(net.parameters(), before, strict=True):
        assert p.grad is None and torch.equal(p, b)


def _mean_spread(
    act: type[torch.nn.Module],
    depth: int,
    sw: float,
    sb: float,
    *,
    orthogonal: bool,
    x_scale: float,
) -> float:
    spreads = []
    for seed in range(3):
        net = _mlp(depth, 128, act, sw, sb, orthogonal=orthogonal, seed=seed)
        x = x_scale * torch.randn(4, 128, generator=torch.Generator().manual_seed(100 + seed))
        spreads.append(jacobian_spectrum(net, x, method="exact").spread)
    return float(np.mean(spreads))


def test_relu_spread_grows_with_depth_and_orthogonal_tanh_stays_narrow() -> None:
    """Pennington et al. 2017: Gaussian ReLU spreads with depth; critical orthogonal tanh not."""
    relu = [
        _mean_spread(torch.nn.ReLU, d, math.sqrt(2.0), 0.0, orthogonal=False, x_scale=1.0)
        for d in (2, 8, 32)
    ]
    assert relu[0] < relu[1] < relu[2]
    assert relu[2] > 3 * relu[0]
    # Near criticality with a small q*: sigma_b^2 = 1e-4 and sigma_w on the critical line.
    sb = 1e-2
    sw = critical_sigma_w("tanh", sb)
    q = mean_field("tanh", sw, sb).q_star
    tanh32 = _mean_spread(torch.nn.Tanh, 32, sw, sb, orthogonal=True, x_scale=math.sqrt(q))
    assert tanh32 < relu[2] / 10


def test_bad_arguments_are_clear_errors() -> None:
    """An unknown method or an empty batch raises ValueError naming it."""
    net = torch.nn.Linear(3, 3)
    with pytest.raises(ValueError, match="method must be"):
        jacobian_spectrum(net, torch.randn(2, 3), method="svd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty batch"):
        jacobian_spectrum(net, torch.randn(0, 3))
