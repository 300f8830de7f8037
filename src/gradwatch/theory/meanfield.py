"""Mean-field predictions for deep random networks (Poole et al. 2016, Schoenholz et al. 2017).

A fully connected network ``h_l = W_l phi(h_{l-1}) + b_l`` with ``W_l ~ N(0, sigma_w^2 /
fan_in)`` and ``b_l ~ N(0, sigma_b^2)`` has, for wide layers, pre-activations that are
Gaussian with a variance ``q`` that follows the *variance map*::

    q_{l+1} = sigma_w^2 E_z[phi(sqrt(q_l) z)^2] + sigma_b^2,        z ~ N(0, 1)

Its fixed point ``q*`` sets how gradients scale from layer to layer::

    chi_1 = sigma_w^2 E_z[phi'(sqrt(q*) z)^2]
    E||dL/dh_l||^2 = chi_1 E||dL/dh_{l+1}||^2

so after ``L`` layers the mean squared gradient is multiplied by ``chi_1^L``: it vanishes
(ordered phase, ``chi_1 < 1``), is preserved (critical, ``chi_1 = 1``) or explodes (chaotic,
``chi_1 > 1``). One-dimensional expectations use composite Gauss-Legendre panels in
``x ~ N(0, q)`` with an edge at 0 (exact at the kinks of ReLU-like activations and at any
``q``; see ``_panel_rule``) or, on request, plain Gauss-Hermite quadrature
(:func:`numpy.polynomial.hermite_e.hermegauss`); the 2-D correlation map uses Gauss-Hermite.

Note on ``sigma_w``: everywhere in this module ``sigma_w`` is the *standard-deviation
multiplier*, ``W ~ N(0, sigma_w^2 / fan_in)`` (so He init for ReLU is ``sigma_w = sqrt(2)``,
LeCun init ``sigma_w = 1``); papers often quote ``sigma_w^2`` instead. Likewise ``sigma_b``
is the bias standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from .activations import Activation, resolve_activation

ActivationLike = str | Callable[..., Any] | Activation
Phase = Literal["ordered", "critical", "chaotic"]

Quadrature = Literal["panels", "hermite"]

#: Gauss-Legendre nodes per panel of the default 1-D rule (see ``_panel_rule``).
N_PANEL = 16
#: Gauss-Hermite nodes for ``quadrature="hermite"``. Even, so that no node sits on the kink
#: at 0 of ReLU-like activations (their half-line sums are then exact by symmetry).
N_HERMITE = 100
#: Nodes per axis for the 2-D expectations of the correlation map (n^2 evaluations).
N_QUAD_2D = 80
#: |chi_1 - 1| below this is reported as the critical phase.
CRITICAL_TOL = 1e-8
#: A variance above this is treated as growing without bound (q* = inf).
Q_MAX = 1e12
#: A fixed point below this is reported as q* = 0 (the signal dies out).
Q_FLOOR = 1e-12
#: Schoenholz et al. (2017) find random networks trainable up to about 6 xi_c layers.
TRAINABLE_DEPTH_FACTOR = 6.0


@lru_cache(maxsize=8)
def _nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights with sum(w f(z)) ~ E[f(z)], z ~ N(0, 1)."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / math.sqrt(2.0 * math.pi)


@lru_cache(maxsize=8)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    t, w = np.polynomial.legendre.leggauss(n)
    return (t + 1.0) / 2.0, w / 2.0  # on [0, 1]


def _panel_rule(q: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes x and weights w with sum(w f(x)) ~ E[f(x)], x ~ N(0, q).

    Composite Gauss-Legendre on panels [0, a], [a, 2a], [2a, 4a] ... up to 12 sqrt(q),
    mirrored to the negative side. 0 is a panel edge, so kinks at 0 (ReLU, ELU, SELU) cost
    no accuracy, and the geometric panels resolve both the activation's own features (at
    |x| ~ 1) and the Gaussian (at |x| ~ sqrt(q)) for any q. Plain Gauss-Hermite in
    z = x / sqrt(q) does neither: its node spacing near 0 is ~0.3 sqrt(q), so for sigmoid at
    q ~ 5000 it misses the bump of phi' entirely, and a kink at 0 leaves ~1e-4 errors.
    """
    s = math.sqrt(q)
    top = 12.0 * s  # the Gaussian mass beyond 12 standard deviations is < 1e-32
    first = min(0.125, s / 8.0)
    n_panels = math.ceil(math.log2(top / first))
    edges = np.concatenate(([0.0], first * 2.0 ** np.arange(n_panels)))
    edges[-1] = max(edges[-1], top)
    t, wt = _legendre(n)
    width = np.diff(edges)
    x = (edges[:-1, None] + width[:, None] * t[None, :]).ravel()
    w = (
        (width[:, None] * wt[None, :]).ravel()
        * np.exp(-0.5 * x * x / q)
        / math.sqrt(2.0 * math.pi * q)
    )
    return np.concatenate((-x[::-1], x)), np.concatenate((w[::-1], w))


def norm_profile(chi_1: float, n_layers: int) -> np.ndarray:
    """Predicted ``||dL/dh_l|| / ||dL/dh_last||`` for ``l = 0 .. n_layers-1`` from ``chi_1``.

    ``chi_1`` multiplies the mean *squared* gradient per layer going back, so layer ``l`` of
    ``L`` gets ``chi_1 ** ((L - 1 - l) / 2)``; the last entry is 1. The one depth profile
    of the theory: :meth:`MeanFieldResult.norm_profile` and the report's overlay use it.

    Example:
        >>> norm_profile(0.25, 3).tolist()
        [0.25, 0.5, 1.0]
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    back = np.arange(n_layers - 1, -1, -1, dtype=np.float64)
    return np.asarray(chi_1 ** (back / 2.0), dtype=np.float64)


@dataclass(frozen=True)
class MeanFieldResult:
    """Mean-field predictions for one activation and initialisation.

    Attributes:
        activation: Name of the activation.
        sigma_w: Weight standard-deviation multiplier, ``W ~ N(0, sigma_w^2 / fan_in)``.
        sigma_b: Bias standard deviation, ``b ~ N(0, sigma_b^2)``.
        q_star: Fixed point of the pre-activation variance map; ``inf`` when the variance
            grows without bound (e.g. ReLU with ``sigma_w > sqrt(2)``, or ``= sqrt(2)`` with
            ``sigma_b > 0``). Then the other quantities are the limits for large ``q``.
        converged: Whether the variance iteration reached its fixed point (``False`` when it
            diverged or was still creeping after ``max_iter`` steps).
        act_mean: ``E[phi(h)]`` at the fixed point (0 for SELU at LeCun init).
        act_second_moment: ``E[phi(h)^2]`` at the fixed point.
        chi_1: ``sigma_w^2 E[phi'(h)^2]``: the factor by which each layer multiplies the mean
            squared backpropagated gradient ``E||dL/dh||^2``.
        phase: ``"ordered"`` (``chi_1 < 1``, gradients vanish), ``"critical"`` or
            ``"chaotic"`` (``chi_1 > 1``, gradients explode).
        c_star: Fixed point of the correlation map between two inputs (1 in the ordered
            and critical phases, below 1 in the chaotic phase).
        chi_c: Slope of the correlation map at ``c_star`` (equals ``chi_1`` when
            ``c_star = 1``).
        depth_scale: ``xi_c = -1 / ln(chi_c)``, the depth over which correlations between
            inputs approach their fixed point. In the ordered phase it equals
            ``-1 / ln(chi_1)``, the depth scale of gradient vanishing; in the chaotic phase
            it is defined through ``chi_c(c*) < 1``; infinite at criticality (and for
            scale-free activations such as ReLU, whose correlation map has slope 1 at c=1).
        gradient_depth_scale: ``1 / |ln(chi_1)|``: layers over which the mean squared
            gradient shrinks (ordered) or grows (chaotic) by a factor e.
        trainable_depth: ``6 * depth_scale``, the depth up to which Schoenholz et al. (2017)
            find such networks trainable.
    """

    activation: str
    sigma_w: float
    sigma_b: float
    q_star: float
    converged: bool
    act_mean: float
    act_second_moment: float
    chi_1: float
    phase: Phase
    c_star: float
    chi_c: float
    depth_scale: float
    gradient_depth_scale: float
    trainable_depth: float

    def gradient_ratio(self, depth: float) -> float:
        """Predicted ``E||dL/dh_0||^2 / E||dL/dh_depth||^2``: ``chi_1 ** depth``.

        This is a ratio of *squared* gradient norms (variances); see :meth:`norm_ratio`.

        Example:
            >>> round(mean_field("relu", math.sqrt(2.0)).gradient_ratio(50), 9)
            1.0
        """
        return float(self.chi_1**depth)

    def norm_ratio(self, depth: float) -> float:
        """Predicted ratio of gradient *norms* across ``depth`` layers: ``chi_1 ** (depth/2)``."""
        return float(self.chi_1 ** (depth / 2.0))

    def norm_profile(self, n_layers: int) -> np.ndarray:
        """Predicted ``||dL/dh_l|| / ||dL/dh_last||`` for layers ``l = 0 .. n_layers-1``.

        In forward order, the last entry is 1: multiply by a measured last-layer gradient
        norm to overlay the prediction on a recorded depth profile.

        Example:
            >>> mean_field("relu", 1.0).norm_profile(3).round(3).tolist()
            [0.5, 0.707, 1.0]
        """
        return norm_profile(self.chi_1, n_layers)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (infinities as the string ``"inf"``)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = str(value)
        return out


def _check_sigma(name: str, value: float, *, positive: bool) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        need = "> 0" if positive else ">= 0"
        raise ValueError(
            f"{name} must be finite and {need}, got {value!r}; it is the standard deviation "
            "multiplier (W ~ N(0, sigma_w^2/fan_in)), not the variance"
        )
    return v


class _Map:
    """The variance and correlation maps of one activation at one (sigma_w, sigma_b)."""

    def __init__(
        self, act: Activation, sigma_w: float, sigma_b: float, quadrature: Quadrature, n: int
    ) -> None:
        self.act = act
        self.sw2 = sigma_w * sigma_w
        self.sb2 = sigma_b * sigma_b
        self.quadrature = quadrature
        self.n = n
        self._memo: tuple[float, np.ndarray, np.ndarray] | None = None

    def rule(self, q: float) -> tuple[np.ndarray, np.ndarray]:
        """Nodes x and weights w for E over x ~ N(0, q) (memoised for the last q)."""
        if self._memo is not None and self._memo[0] == q:
            return self._memo[1], self._memo[2]
        if self.quadrature == "hermite":
            z, w = _nodes(self.n)
            x = math.sqrt(q) * z
        else:
            x, w = _panel_rule(q, self.n)
        self._memo = (q, x, w)
        return x, w

    def expect(self, fn: Callable[[np.ndarray], np.ndarray], q: float) -> float:
        x, w = self.rule(q)
        return float(np.dot(w, fn(x)))

    def variance(self, q: float) -> float:
        return self.sw2 * self.expect(lambda u: self.act.phi(u) ** 2, q) + self.sb2

    def variance_slope(self, q: float) -> float:
        """d variance / dq = sigma_w^2 E[phi(x) phi'(x) x] / q (Stein's lemma)."""
        return self.sw2 * self.expect(lambda u: self.act.phi(u) * self.act.dphi(u) * u, q) / q

    def chi(self, q: float) -> float:
        return self.sw2 * self.expect(lambda u: self.act.dphi(u) ** 2, q)

    def fixed_point(self, q_init: float, tol: float, max_iter: int) -> tuple[float, bool, float]:
        """Iterate the variance map; returns (q*, converged, the q to evaluate chi_1 at)."""
        q = q_init
        ratio = math.nan
        for _ in range(max_iter):
            q_next = self.variance(q)
            if not math.isfinite(q_next) or q_next > Q_MAX:
                return math.inf, False, min(q, Q_MAX)
            # Geometric growth at a constant rate (ReLU-like maps, V(q) = a q with a > 1)
            # never reaches Q_MAX when a is close to 1: stop as soon as the rate settles.
            new_ratio = q_next / q
            if q >= 1.0 and new_ratio > 1.0 and abs(new_ratio - ratio) <= 1e-12 * new_ratio:
                return math.inf, False, q_next
            ratio = new_ratio
            if q_next <= 0.0:  # sigma_b = 0 and phi = 0 on the whole support: no signal
                return 0.0, True, 0.0
            step = q_next - q
            # Relative tolerance, with an absolute floor for fixed points at q* = 0
            # (sigma_b = 0 in the ordered phase), which are approached only geometrically.
            if abs(step) <= tol * max(q_next, Q_FLOOR):
                return (q_next if q_next > Q_FLOOR else 0.0), True, q_next
            # Newton acceleration where the map contracts (slope < 1): the Newton step has
            # the same direction as the plain one, only longer, so it cannot jump to an
            # unstable fixed point. Kept only when it shrinks the residual. A step past 0
            # means the fixed point is q* = 0: jump a factor 1000 towards it instead.
            slope = self.variance_slope(q)
            if slope < 1.0 - 1e-9:
                q_nt = q + step / (1.0 - slope)
                if q_nt <= 0.0:
                    q_nt = 1e-3 * q
                if q_nt < Q_MAX and abs(self.variance(q_nt) - q_nt) < abs(step):
                    q = q_nt
                    continue
            q = q_next
        grew = self.variance(q) > q
        return (math.inf if grew else q), False, q

    def correlation(self, q: float, n2: int) -> tuple[float, float]:
        """Stable fixed point c* of the correlation map below 1 and the slope chi_c there."""
        z, w = _nodes(n2)
        z1, z2 = np.meshgrid(z, z, indexing="ij")
        ww = np.outer(w, w)
        sq = math.sqrt(q)
        u1 = sq * z1
        phi1, dphi1 = self.act.phi(u1), self.act.dphi(u1)
        q_next = self.variance(q)  # = q at a fixed point; the normaliser when q diverges

        def c_map(c: float) -> tuple[float, float]:
            u2 = sq * (c * z1 + math.sqrt(max(0.0, 1.0 - c * c)) * z2)
            val = (self.sw2 * float(np.sum(ww * phi1 * self.act.phi(u2))) + self.sb2) / q_next
            # Price's theorem: d/dc E[phi(u1) phi(u2)] = q E[phi'(u1) phi'(u2)].
            slope = self.sw2 * q * float(np.sum(ww * dphi1 * self.act.dphi(u2))) / q_next
            return min(val, 1.0), slope

        c = 0.5
        for _ in range(5000):
            c_next, slope = c_map(c)
            step = c_next - c
            if abs(step) <= 1e-12:
                c = c_next
                break
            if slope < 1.0 - 1e-9:
                c_nt = c + step / (1.0 - slope)
                if -1.0 <= c_nt <= 1.0 and abs(c_map(c_nt)[0] - c_nt) < abs(step):
                    c = c_nt
                    continue
            c = c_next
        return c, c_map(c)[1]


def _depth_scale(chi: float) -> float:
    if chi <= 0.0:
        return 0.0
    if chi >= 1.0:
        return math.inf
    return -1.0 / math.log(chi)


def mean_field(
    activation: ActivationLike,
    sigma_w: float,
    sigma_b: float = 0.0,
    *,
    q_init: float = 1.0,
    quadrature: Quadrature = "panels",
    n_quad: int | None = None,
    tol: float = 1e-12,
    max_iter: int = 2_000,
) -> MeanFieldResult:
    """Mean-field predictions for a deep random network.

    Args:
        activation: A name (``"sigmoid"``, ``"tanh"``, ``"relu"``, ``"leaky_relu"``,
            ``"elu"``, ``"selu"``, ``"swish"``, ``"gelu"``, ``"linear"``) or any elementwise
            callable (``torch.tanh``, ``nn.LeakyReLU(0.2)``, a numpy function).
        sigma_w: Weight standard-deviation *multiplier*: ``W ~ N(0, sigma_w^2 / fan_in)``
            (He init for ReLU: ``sqrt(2)``; LeCun: 1; PyTorch's default ``nn.Linear`` init:
            ``1/sqrt(3)``). Not the variance.
        sigma_b: Bias standard deviation, ``b ~ N(0, sigma_b^2)``.
        q_init: Starting variance of the iteration (the input's per-unit second moment).
        quadrature: ``"panels"`` (default): composite Gauss-Legendre in ``x ~ N(0, q)``
            with a panel edge at 0, accurate to ~1e-12 for kinks at 0 and any ``q``;
            ``"hermite"``: plain Gauss-Hermite (``hermegauss``) in ``z``, the textbook rule,
            exact for smooth activations at moderate ``q`` but off by ~1e-4 at kinks and
            badly off for narrow features at large ``q`` (sigmoid with ``sigma_w > 10``).
            The 2-D correlation map (chaotic phase only) always uses Gauss-Hermite.
        n_quad: Nodes per panel (default 16) or Gauss-Hermite nodes (default 100).
        tol: Relative tolerance of the fixed point.
        max_iter: Iteration cap.

    Returns:
        A frozen :class:`MeanFieldResult`.

    Raises:
        ValueError: For a negative or non-finite ``sigma_w`` / ``sigma_b`` or bad settings.

    Example:
        >>> r = mean_field("tanh", sigma_w=math.sqrt(1.5), sigma_b=math.sqrt(0.05))
        >>> round(r.chi_1, 3), r.phase
        (0.939, 'ordered')
        >>> r.gradient_ratio(50) < 0.05
        True
    """
    sw = _check_sigma("sigma_w", sigma_w, positive=True)
    sb = _check_sigma("sigma_b", sigma_b, positive=False)
    if not (math.isfinite(q_init) and q_init > 0):
        raise ValueError(f"q_init must be finite and > 0, got {q_init!r}")
    if quadrature not in ("panels", "hermite"):
        raise ValueError(f"quadrature must be 'panels' or 'hermite', got {quadrature!r}")
    n = n_quad if n_quad is not None else (N_PANEL if quadrature == "panels" else N_HERMITE)
    if n < 4:
        raise ValueError(f"n_quad must be >= 4, got {n_quad!r}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter!r}")
    act = resolve_activation(activation)
    m = _Map(act, sw, sb, quadrature, n)
    q_star, converged, q_eval = m.fixed_point(float(q_init), tol, max_iter)
    if q_eval <= 0.0:
        # The variance collapsed to 0: the network is linearised around 0.
        zero = np.zeros(1)
        chi_1 = m.sw2 * float(act.dphi(zero)[0] ** 2)
        act_mean = float(act.phi(zero)[0])
        second = act_mean**2
    else:
        chi_1 = m.chi(q_eval)
        act_mean = m.expect(act.phi, q_eval)
        second = m.expect(lambda u: act.phi(u) ** 2, q_eval)

    phase: Phase
    if abs(chi_1 - 1.0) <= CRITICAL_TOL:
        phase, c_star, chi_c = "critical", 1.0, 1.0
    elif chi_1 < 1.0:
        phase, c_star, chi_c = "ordered", 1.0, chi_1
    else:
        phase = "chaotic"
        if math.isfinite(q_star) and q_eval > 0:
            c_star, chi_c = m.correlation(q_eval, N_QUAD_2D)
        else:
            # q grows without bound: the activation acts through its large-|x| (ReLU-like,
            # positively homogeneous) limit, whose normalised correlation map has c = 1 as
            # a fixed point of slope 1. Gradients explode on the scale 1/ln(chi_1).
            c_star, chi_c = 1.0, 1.0
    xi_c = _depth_scale(chi_c)
    grad_scale = math.inf if chi_1 == 1.0 else (0.0 if chi_1 <= 0 else 1.0 / abs(math.log(chi_1)))
    return MeanFieldResult(
        activation=act.name,
        sigma_w=sw,
        sigma_b=sb,
        q_star=q_star,
        converged=converged,
        act_mean=act_mean,
        act_second_moment=second,
        chi_1=chi_1,
        phase=phase,
        c_star=c_star,
        chi_c=chi_c,
        depth_scale=xi_c,
        gradient_depth_scale=grad_scale,
        trainable_depth=TRAINABLE_DEPTH_FACTOR * xi_c,
    )


def chi_1(
    activation: ActivationLike,
    sigma_w: float,
    sigma_b: float = 0.0,
    *,
    q_init: float = 1.0,
    max_iter: int = 2_000,
) -> float:
    """Only ``chi_1`` (no correlation map): the cheap call for sweeps and root finding.

    Same conventions as :func:`mean_field` (``sigma_w`` is the standard-deviation
    multiplier); where the variance iteration has not converged after ``max_iter`` steps,
    ``chi_1`` is taken at the last iterate.

    Example:
        >>> round(chi_1("relu", math.sqrt(2.0)), 12)
        1.0
    """
    sw = _check_sigma("sigma_w", sigma_w, positive=True)
    sb = _check_sigma("sigma_b", sigma_b, positive=False)
    act = resolve_activation(activation)
    m = _Map(act, sw, sb, "panels", N_PANEL)
    _, _, q_eval = m.fixed_point(float(q_init), 1e-12, max_iter)
    if q_eval <= 0.0:
        return m.sw2 * float(act.dphi(np.zeros(1))[0] ** 2)
    return m.chi(q_eval)


def critical_sigma_w(
    activation: ActivationLike,
    sigma_b: float = 0.0,
    *,
    lo: float = 1e-3,
    hi: float = 1e3,
    rtol: float = 1e-10,
) -> float:
    """The ``sigma_w`` on the order/chaos boundary (``chi_1 = 1``) for a given ``sigma_b``.

    Found by bracketing and bisection in ``log(sigma_w)``. ``sigma_w`` is the standard
    deviation multiplier (``W ~ N(0, sigma_w^2 / fan_in)``).

    Args:
        activation: As for :func:`mean_field`.
        sigma_b: Bias standard deviation.
        lo: Smallest ``sigma_w`` searched.
        hi: Largest ``sigma_w`` searched.
        rtol: Relative tolerance on ``sigma_w``.

    Raises:
        ValueError: When ``chi_1 - 1`` does not change sign between ``lo`` and ``hi``.

    Example:
        >>> round(critical_sigma_w("relu"), 9)  # He init
        1.414213562
    """
    _check_sigma("sigma_b", sigma_b, positive=False)
    act = resolve_activation(activation)

    def f(log_s: float) -> float:
        # 500 iterations: enough for every map that converges (Newton-accelerated); for
        # the scale-free ones that do not (ReLU at sigma_b > 0), chi_1 barely depends on q.
        return chi_1(act, math.exp(log_s), sigma_b, max_iter=500) - 1.0

    # Bracket by scanning outward from sigma_w = 1 in factors of 2.
    a = b = 0.0
    fa = fb = f(0.0)
    while fb < 0 and math.exp(b) < hi:
        a, fa = b, fb
        b = min(b + math.log(2.0), math.log(hi))
        fb = f(b)
    while fa > 0 and math.exp(a) > lo:
        b, fb = a, fa
        a = max(a - math.log(2.0), math.log(lo))
        fa = f(a)
    if fa == 0.0:
        return math.exp(a)
    if fb == 0.0:
        return math.exp(b)
    if not (fa < 0.0 < fb):
        raise ValueError(
            f"chi_1 of {act.name!r} with sigma_b={sigma_b!r} does not cross 1 for sigma_w in "
            f"[{lo}, {hi}] (chi_1 - 1 = {fa + 1:.3g} - 1 at the low end, {fb + 1:.3g} - 1 at "
            "the high end); widen lo/hi or lower sigma_b"
        )
    while b - a > rtol:
        mid = 0.5 * (a + b)
        fm = f(mid)
        if fm == 0.0:
            return math.exp(mid)
        if fm < 0.0:
            a, fa = mid, fm
        else:
            b, fb = mid, fm
    if fb - fa > 1e-6:
        # chi_1 jumps across 1 instead of passing through it: q* switches between two
        # fixed points there (e.g. GELU or swish with sigma_b = 0, where q* = 0 is stable
        # below the boundary and a finite q* appears above it).
        raise ValueError(
            f"chi_1 of {act.name!r} with sigma_b={sigma_b!r} jumps from {fa + 1:.4g} to "
            f"{fb + 1:.4g} at sigma_w = {math.exp(a):.6g}: no sigma_w gives chi_1 = 1 "
            "because the variance fixed point q* jumps there; try a larger sigma_b"
        )
    return math.exp(0.5 * (a + b))
