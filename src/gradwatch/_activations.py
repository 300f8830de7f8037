"""The one activation table: ids, aliases, torch classes, and the kind of each activation.

A leaf module (nothing of gradwatch imported), read by every package that names an
activation: the recorder (which units can saturate or die), the rules and their messages,
the remedies (which activation to swap in), the theory (which phi to integrate) and the lab.

* An **id** is the lower-case name used in remedy ids, lab configs and the theory CLI
  (``"relu"``, ``"leaky_relu"``, ``"swish"``, ``"linear"``).
* A **class name** is the torch module's ``type(m).__name__`` (``"SiLU"``), as recorded in
  ``LayerInfo.activation``.
* The **kind** says how units of that activation fail: ``"saturating"`` units sit where the
  derivative is near 0 (sigmoid, tanh), ``"relu_like"`` units can output nothing over a whole
  batch, ``"other"`` are recognised as activations with neither check. ``"relu_like"`` is a
  family: only ReLU, ReLU6 and ReLU² have an exactly zero derivative below 0; GELU, SiLU,
  Mish, ELU, LeakyReLU ... keep a small one (:data:`ZERO_GRADIENT` says which are which).
* Third-party classes (Hugging Face ``transformers``, ``timm``, ``open_clip``) are known by
  class **name** (nothing is imported) through :data:`EQUIVALENT`: the torch class each one
  computes, whose kind and saturation bounds it shares.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from torch import nn

ActivationKind = Literal["saturating", "relu_like", "other"]

#: torch activation class name -> kind.
KINDS: dict[str, ActivationKind] = {
    "Sigmoid": "saturating",
    "Tanh": "saturating",
    "Hardtanh": "saturating",
    "Hardsigmoid": "saturating",
    "Softsign": "saturating",
    "LogSigmoid": "saturating",
    "ReLU": "relu_like",
    "ReLU6": "relu_like",
    "LeakyReLU": "relu_like",
    "PReLU": "relu_like",
    "RReLU": "relu_like",
    "ELU": "relu_like",
    "CELU": "relu_like",
    "SELU": "relu_like",
    "GELU": "relu_like",
    "SiLU": "relu_like",
    "Mish": "relu_like",
    "Hardswish": "relu_like",
    "Softplus": "other",
    "Tanhshrink": "other",
    "Softshrink": "other",
    "Hardshrink": "other",
}
#: Third-party activation class name -> the torch class it computes (same kind, same bounds).
#: Hugging Face ``transformers.activations`` and ``timm.layers.activations`` names; an
#: unknown parameter-free module is also recognised by its response (recording's probe).
EQUIVALENT: dict[str, str] = {
    # Hugging Face transformers.activations
    "GELUActivation": "GELU",
    "NewGELUActivation": "GELU",  # the tanh approximation (GPT-2)
    "FastGELUActivation": "GELU",
    "QuickGELUActivation": "GELU",  # x * sigmoid(1.702 x) (CLIP)
    "GELUTanh": "GELU",
    "PytorchGELUTanh": "GELU",
    "ClippedGELUActivation": "GELU",
    "AccurateGELUActivation": "GELU",
    "SiLUActivation": "SiLU",
    "MishActivation": "Mish",
    "LinearActivation": "Identity",
    "ReLUSquaredActivation": "ReLU",  # relu(x)**2: zero below 0, dead like a ReLU
    # timm.layers.activations (and its memory-efficient "Me" variants), open_clip
    "GELUTanhApprox": "GELU",
    "QuickGELU": "GELU",
    "Swish": "SiLU",
    "SwishMe": "SiLU",
    "MishMe": "Mish",
    "HardMish": "Mish",
    "HardMishMe": "Mish",
    "HardSwish": "Hardswish",
    "HardSwishMe": "Hardswish",
    "HardSigmoid": "Hardsigmoid",
    "HardSigmoidMe": "Hardsigmoid",
}

#: Torch classes whose derivative is exactly 0 on a half-line: the units that can truly die.
ZERO_GRADIENT = frozenset({"ReLU", "ReLU6"})

SATURATING = frozenset(k for k, v in KINDS.items() if v == "saturating")
RELU_LIKE = frozenset(k for k, v in KINDS.items() if v == "relu_like")
OTHER = frozenset(k for k, v in KINDS.items() if v == "other")

#: Activations gradwatch can swap in, by id (each id is also a remedy id) -> torch class name.
SWAPPABLE: dict[str, str] = {
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "relu": "ReLU",
    "leaky_relu": "LeakyReLU",
    "prelu": "PReLU",
    "elu": "ELU",
    "selu": "SELU",
    "swish": "SiLU",
    "gelu": "GELU",
}
#: The activation remedy ids, in the order remedies list them.
ACTIVATION_IDS: tuple[str, ...] = tuple(SWAPPABLE)

#: Every id -> torch class name: the swappable ones plus the identity ("linear").
CLASS_NAMES: dict[str, str] = {**SWAPPABLE, "linear": "Identity"}

#: Other spellings -> id (compared lower-case, without underscores).
ALIASES: dict[str, str] = {
    "identity": "linear",
    "none": "linear",
    "silu": "swish",
    "leakyrelu": "leaky_relu",
    "logistic": "sigmoid",
}


def canonical(name: str) -> str:
    """The id of an activation given by id, alias or torch class name.

    Case and underscores are ignored. Raises ``ValueError`` naming the known ids.

    Example:
        >>> canonical("SiLU"), canonical("identity"), canonical("Leaky_ReLU")
        ('swish', 'linear', 'leaky_relu')
    """
    key = str(name).strip().lower().replace("_", "")
    for ident in CLASS_NAMES:
        if key == ident.replace("_", ""):
            return ident
    if key in ALIASES:
        return ALIASES[key]
    for ident, cls in CLASS_NAMES.items():
        if key == cls.lower():
            return ident
    raise ValueError(
        f"unknown activation {name!r}; use one of {list(CLASS_NAMES)} (aliases: "
        f"{sorted(ALIASES)}; torch class names such as 'SiLU' work too)"
    )


def module_class(name: str) -> type[nn.Module]:
    """The torch module class of an activation id, alias or class name (``nn.SiLU`` for
    ``"swish"``, ``nn.Identity`` for ``"linear"``)."""
    from torch import nn

    cls: type[nn.Module] = getattr(nn, CLASS_NAMES[canonical(name)])
    return cls


_KINDS_LOWER = {k.lower(): k for k in KINDS}


def torch_equivalent(class_name: str) -> str | None:
    """The torch class an activation class computes (itself for torch's own), or None.

    ``"Identity"`` for Hugging Face's ``LinearActivation``: recognised, but no activation.

    Example:
        >>> [torch_equivalent(c) for c in ("NewGELUActivation", "Tanh", "Linear")]
        ['GELU', 'Tanh', None]
    """
    if class_name in KINDS:
        return class_name
    if class_name in EQUIVALENT:
        return EQUIVALENT[class_name]
    # A hand-written spelling ("relu", "leakyrelu"): the class whose name matches, any case.
    return _KINDS_LOWER.get(class_name.lower())


def kind_of(class_name: str) -> ActivationKind | None:
    """The kind of an activation class name (torch or a known third-party one), or None when
    it is not a known activation (``"other"`` for an identity such as ``LinearActivation``)."""
    like = torch_equivalent(class_name)
    if like == "Identity":
        return "other"
    return KINDS.get(like) if like is not None else None


def none_saturate(class_names: Iterable[str]) -> bool:
    """Whether ``class_names`` are all known activations and none saturates (ReLU, GELU,
    SiLU ...): swapping in a ReLU then passes no more gradient. False for an empty set or an
    unknown name (what it does is not known).

    Example:
        >>> none_saturate(["NewGELUActivation", "gelu"]), none_saturate(["GELU", "Tanh"])
        (True, False)
    """
    kinds = [kind_of(name) for name in class_names]
    return bool(kinds) and all(k is not None and k != "saturating" for k in kinds)


#: The init gain a layer needs when this activation follows it (torch class name -> gain):
#: weights ~ gain / sqrt(fan_in) keep the signal's scale through depth. The one gain table:
#: the ``poor_initialization`` rule judges a layer's starting scale against it and
#: ``gradwatch.remedies.activation_gain`` (He, orthogonal and per-layer inits) initialises
#: with it, so a freshly remedied net is never flagged by the rule for its init.
#: Sigmoid, Tanh, ReLU and LeakyReLU (slope 0.01) are torch's ``calculate_gain``. SELU is 1,
#: not ``calculate_gain("selu")``'s 3/4: SELU's self-normalisation (Klambauer et al. 2017)
#: holds at LeCun-normal init, Var(W) = 1/fan_in, where the mean-field variance fixed point
#: is q* = 1 (``gradwatch.theory.mean_field("selu", 1.0)``; the klambauer2017 study measures
#: std 1.00 after 31 layers); at 3/4 the fixed point falls to q* = 0.023, so activations
#: shrink to std ~0.15 with depth, which the rule's own activation-std check would flag.
#: (torch picked 3/4 for a steadier gradient: chi_1 = 1.004 per layer against 1.07 at 1.)
INIT_GAINS: dict[str, float] = {
    "Identity": 1.0,
    "Sigmoid": 1.0,
    "Tanh": 5.0 / 3.0,
    "ReLU": math.sqrt(2.0),
    "LeakyReLU": math.sqrt(2.0 / (1.0 + 0.01**2)),
    "SELU": 1.0,
}
_GAINS_LOWER = {k.lower(): v for k, v in INIT_GAINS.items()}


def init_gain(name: str) -> float | None:
    """The init gain of :data:`INIT_GAINS` for an activation class name or id, or None.

    Case and underscores are ignored (``"LeakyReLU"``, ``"leaky_relu"``); ``"linear"`` is the
    identity. None for an activation with no entry (GELU, ELU ...: its gain is not a table
    value but computed by the remedies from its second moment).

    Example:
        >>> init_gain("SELU"), init_gain("relu") == math.sqrt(2.0), init_gain("GELU")
        (1.0, True, None)
    """
    key = str(name).strip().lower().replace("_", "")
    if key in ("linear", "none"):
        key = "identity"
    return _GAINS_LOWER.get(key)
