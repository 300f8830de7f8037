"""Activation functions and their derivatives as float64 numpy functions.

Mean-field theory needs ``phi`` and ``phi'`` at quadrature nodes. The named activations have
closed-form derivatives here; any other callable is evaluated through torch (derivative by
autograd, exact) or, when it does not accept a torch tensor, through numpy with a central
finite difference.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._activations import canonical

ArrayFn = Callable[[np.ndarray], np.ndarray]

#: torch's defaults, so a prediction matches ``nn.LeakyReLU()``, ``nn.ELU()`` and ``nn.SELU()``.
LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # 0.5 (1 + tanh(x/2)) never overflows, unlike 1 / (1 + exp(-x)) for x << 0.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _dsigmoid(x: np.ndarray) -> np.ndarray:
    s = _sigmoid(x)
    return s * (1.0 - s)


def _dtanh(x: np.ndarray) -> np.ndarray:
    return 1.0 - np.tanh(x) ** 2


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _drelu(x: np.ndarray) -> np.ndarray:
    return (x > 0).astype(np.float64)


def _leaky(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, LEAKY_SLOPE * x)


def _dleaky(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, 1.0, LEAKY_SLOPE)


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, ELU_ALPHA * np.expm1(np.minimum(x, 0.0)))


def _delu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, 1.0, ELU_ALPHA * np.exp(np.minimum(x, 0.0)))


def _selu(x: np.ndarray) -> np.ndarray:
    return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))


def _dselu(x: np.ndarray) -> np.ndarray:
    return SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0)))


def _swish(x: np.ndarray) -> np.ndarray:
    return x * _sigmoid(x)


def _dswish(x: np.ndarray) -> np.ndarray:
    s = _sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu(x: np.ndarray) -> np.ndarray:
    # The exact GELU, x * Phi(x), as nn.GELU() computes by default.
    return x * _normal_cdf(x)


def _dgelu(x: np.ndarray) -> np.ndarray:
    return _normal_cdf(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _identity(x: np.ndarray) -> np.ndarray:
    return np.array(x, dtype=np.float64, copy=True)


def _done(x: np.ndarray) -> np.ndarray:
    return np.ones_like(x, dtype=np.float64)


_NAMED: dict[str, tuple[ArrayFn, ArrayFn]] = {
    "sigmoid": (_sigmoid, _dsigmoid),
    "tanh": (np.tanh, _dtanh),
    "relu": (_relu, _drelu),
    "leaky_relu": (_leaky, _dleaky),
    "elu": (_elu, _delu),
    "selu": (_selu, _dselu),
    "swish": (_swish, _dswish),
    "gelu": (_gelu, _dgelu),
    "linear": (_identity, _done),
}

#: Activation names :func:`resolve_activation` accepts.
ACTIVATIONS: tuple[str, ...] = tuple(_NAMED)


@dataclass(frozen=True)
class Activation:
    """An activation as float64 numpy functions.

    Attributes:
        name: Canonical name (``"tanh"``) or the callable's name.
        phi: The activation, applied elementwise.
        dphi: Its derivative, applied elementwise.
        derivative: How ``dphi`` is computed: ``"closed-form"``, ``"autograd"`` or
            ``"finite-difference"``.
    """

    name: str
    phi: ArrayFn
    dphi: ArrayFn
    derivative: str


def resolve_activation(activation: str | Callable[..., Any] | Activation) -> Activation:
    """Turn a name or a callable into float64 ``phi`` and ``phi'``.

    Args:
        activation: One of :data:`ACTIVATIONS` (case and ``_`` ignored; the aliases and
            torch class names of :mod:`gradwatch._activations` such as ``"LeakyReLU"``,
            ``"SiLU"``, ``"identity"`` work too), or any elementwise callable: a
            torch function or module (``torch.tanh``, ``nn.LeakyReLU(0.2)``; derivative by
            autograd) or a numpy function (derivative by central finite differences).

    Raises:
        ValueError: For an unknown name, or a callable that is not elementwise.
        TypeError: For anything else.

    Example:
        >>> import numpy as np
        >>> act = resolve_activation("tanh")
        >>> float(act.dphi(np.array([0.0]))[0])
        1.0
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        # Spellings (aliases, torch class names as LayerInfo.activation holds them) resolve
        # through the one activation table; theory integrates the ids it has closed forms for.
        try:
            key: str | None = canonical(activation)
        except ValueError:
            key = None
        if key is None or key not in _NAMED:
            raise ValueError(
                f"unknown activation {activation!r}; use one of {list(_NAMED)} or pass a "
                "callable such as torch.tanh"
            )
        phi, dphi = _NAMED[key]
        return Activation(key, phi, dphi, "closed-form")
    if callable(activation):
        return _from_callable(activation)
    raise TypeError(
        f"activation must be a name or a callable, got {type(activation).__name__}: {activation!r}"
    )


def _callable_name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__name__", None) or type(fn).__name__)


def _from_callable(fn: Callable[..., Any]) -> Activation:
    import torch

    probe = np.linspace(-3.0, 3.0, 7)
    name = _callable_name(fn)
    x = torch.from_numpy(probe.copy()).requires_grad_(True)
    try:
        with warnings.catch_warnings(), torch.enable_grad():
            # numpy ufuncs accept tensors with a DeprecationWarning; that is how we tell
            # them apart from torch functions (their output has no autograd graph).
            warnings.simplefilter("ignore")
            out = fn(x)
    except Exception:  # not a torch function: evaluate it through numpy instead
        out = None
    if isinstance(out, torch.Tensor) and out.requires_grad:
        if tuple(out.shape) != probe.shape:
            raise ValueError(
                f"activation {name!r} maps shape {probe.shape} to {tuple(out.shape)}; it must "
                "be elementwise"
            )

        def phi_t(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return fn(torch.from_numpy(np.array(x, np.float64))).double().numpy()

        def dphi_t(x: np.ndarray) -> np.ndarray:
            xt = torch.from_numpy(np.array(x, np.float64)).requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(fn(xt).sum(), xt, allow_unused=True)
            if g is None:  # the output does not depend on the input
                return np.zeros(np.shape(x), np.float64)
            return g.detach().double().numpy()

        return Activation(name, phi_t, dphi_t, "autograd")

    def phi_np(x: np.ndarray) -> np.ndarray:
        return np.asarray(fn(np.array(x, np.float64)), dtype=np.float64)

    try:
        got = phi_np(probe)
    except Exception as exc:
        raise ValueError(
            f"activation {name!r} could not be evaluated on a float64 torch tensor or numpy "
            f"array ({type(exc).__name__}: {exc}); pass an elementwise function"
        ) from exc
    if got.shape != probe.shape:
        raise ValueError(
            f"activation {name!r} maps shape {probe.shape} to {got.shape}; it must be elementwise"
        )
    return Activation(name, phi_np, _finite_difference(phi_np), "finite-difference")


def _finite_difference(phi: ArrayFn) -> ArrayFn:
    def dphi(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        # Central difference; a step ~ eps^(1/3) relative to |x| balances truncation and
        # rounding error (about 1e-10 relative for smooth functions).
        h = 6e-6 * np.maximum(1.0, np.abs(x))
        return (phi(x + h) - phi(x - h)) / (2.0 * h)

    return dphi
