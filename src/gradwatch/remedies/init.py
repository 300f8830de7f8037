"""Initialisation remedies, all in place (names end in ``_``, as ``torch.nn.init``).

The one place gradwatch defines initialisation schemes and activation gains: the model-wide
remedies (``init_xavier_`` ...; LSUV, which needs data, in :mod:`.lsuv`), the per-layer
:func:`init_layer_` the lab builds its models with (:data:`INIT_SCHEMES`), and
:func:`activation_gain`.

The model-wide remedies set the weights of the dense, convolutional (and, where it is
defined, recurrent) layers of a model, zero their biases, and put torch's norm layers back
to their own initialisation (gain 1, shift 0, fresh running statistics: a norm's gain scales
the signal as a weight does); other modules (other norm classes, embeddings ...) keep their
parameters. On any error the model is restored exactly (no half-initialised model).

References: Glorot & Bengio 2010 (Xavier), He et al. 2015 (He/Kaiming), LeCun et al. 1998
and Klambauer et al. 2017 (LeCun normal for SELU), Saxe et al. 2014 (orthogonal),
Le, Jaitly & Hinton 2015 (IRNN identity recurrent init), Mishkin & Matas 2016 (LSUV).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .._activations import init_gain
from ._common import (
    UnsupportedModelError,
    activation_types,
    atomic_,
    norm_types,
    type_names,
    weight_layer_types,
)

__all__ = [
    "INIT_SCHEMES",
    "InitScheme",
    "activation_gain",
    "following_activations",
    "init_he_",
    "init_identity_",
    "init_layer_",
    "init_lecun_",
    "init_orthogonal_",
    "init_xavier_",
]

Distribution = Literal["uniform", "normal"]


@dataclass(frozen=True)
class _Target:
    """One weight matrix to initialise, split into gate blocks along dim 0."""

    layer: str
    weight: torch.Tensor
    chunks: int
    # the nonlinearity the matrix feeds inside its own cell: nn.RNN's tanh/relu; "linear"
    # for LSTM/GRU gates (gain 1); None for a feed-forward layer (the next activation counts)
    own_nonlinearity: str | None = None


def _gates(module: nn.Module) -> int:
    if isinstance(module, nn.LSTM):
        return 4
    if isinstance(module, nn.GRU):
        return 3
    return 1


def _targets(model: nn.Module, *, recurrent: bool = True) -> list[_Target]:
    out: list[_Target] = []
    for name, m in model.named_modules():
        if isinstance(m, weight_layer_types()):
            assert isinstance(m.weight, torch.Tensor)
            out.append(_Target(name, m.weight, 1))
        elif recurrent and isinstance(m, nn.RNNBase):
            own = m.nonlinearity if isinstance(m, nn.RNN) else "linear"
            for pname, p in m.named_parameters(recurse=False):
                if pname.startswith("weight_"):
                    out.append(_Target(name, p, _gates(m), own))
    if not out:
        supported = (
            (*weight_layer_types(), nn.RNN, nn.LSTM, nn.GRU)
            if recurrent
            else (weight_layer_types())
        )
        raise UnsupportedModelError(
            f"{type(model).__name__} has no layer this initialisation supports "
            f"(found: {found_types(model)}); supported: {type_names(supported)}"
        )
    return out


def found_types(model: nn.Module) -> str:
    seen = [
        type(m).__name__ for m in model.modules() if any(True for _ in m.parameters(recurse=False))
    ]
    return ", ".join(dict.fromkeys(seen)) or "no module with parameters"


def module_tensor(module: nn.Module, name: str) -> torch.Tensor | None:
    """``module.<name>`` if it is a tensor (e.g. ``bias=False`` makes it None)."""
    value = getattr(module, name, None)
    return value if isinstance(value, torch.Tensor) else None


def _zero_biases(model: nn.Module) -> None:
    for m in model.modules():
        bias = module_tensor(m, "bias")
        if isinstance(m, weight_layer_types()) and bias is not None:
            bias.zero_()
        elif isinstance(m, nn.RNNBase):
            for pname, p in m.named_parameters(recurse=False):
                if pname.startswith("bias_"):
                    p.zero_()


def reset_norms(model: nn.Module) -> None:
    """Torch's norm layers back to their own init: gain 1, shift 0, fresh running statistics.

    A norm's gain multiplies the signal like a weight: HF EfficientNet draws its BatchNorm
    gains from N(0, 0.02), and with its BatchNorm eps of 1e-3 the signal shrinks at every
    block (1e-31 by the last at 32 x 32) whatever the convolutions' init; it learns once the
    gains are 1 (``real_corpus`` ``efficientnet_hf_init``). Other norm classes keep their
    parameters: their identity is not known (Gemma's RMSNorm multiplies by 1 + weight).
    """
    for m in model.modules():
        # Each of torch's norm classes defines reset_parameters as its identity init (the
        # tuple's static type, nn.Module, does not know the method).
        if isinstance(m, norm_types()):
            m.reset_parameters()  # type: ignore[operator]


def _chunks(t: _Target) -> Iterator[torch.Tensor]:
    yield from t.weight.chunk(t.chunks, dim=0)


def following_activations(model: nn.Module) -> dict[str, nn.Module | None]:
    """For each weight layer, the activation module that follows it, or None.

    The order is module registration order, which is the forward order of an
    ``nn.Sequential``; norms and dropout between a layer and its activation are skipped.

    Example:
        >>> from torch import nn
        >>> following_activations(nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1)))
        {'0': Tanh(), '2': None}
    """
    result: dict[str, nn.Module | None] = {}
    open_layers: list[str] = []
    for name, m in model.named_modules():
        if isinstance(m, (*weight_layer_types(), nn.RNNBase)):
            for o in open_layers:
                result[o] = None
            open_layers = [name]
            result[name] = None
        elif isinstance(m, activation_types()):
            for o in open_layers:
                result[o] = m
            open_layers = []
    return result


def _second_moment_gain(act: nn.Module) -> float:
    """1 / sqrt(E[f(z)^2]) for z ~ N(0, 1), by 64-point Gauss-Hermite quadrature: the gain
    that keeps the forward second moment, He et al.'s derivation (sqrt(2) for ReLU)."""
    import numpy as np

    x, w = np.polynomial.hermite_e.hermegauss(64)  # weight exp(-x^2/2)
    with torch.no_grad():
        fx = act(torch.as_tensor(x, dtype=torch.float64)).numpy()
    second = float(np.sum(w * fx**2) / math.sqrt(2 * math.pi))
    return 1.0 / math.sqrt(second)


def activation_gain(act: nn.Module | str | None) -> float:
    """The init gain for a layer followed by ``act``: gradwatch's one activation -> gain table.

    Every initialisation here (:func:`init_he_`, ``init_orthogonal_(gain="auto")``,
    :func:`init_layer_`) takes its gain from this function.

    The table :data:`gradwatch._activations.INIT_GAINS` where it has the activation (sigmoid
    and linear 1, tanh 5/3, relu sqrt(2), leaky_relu sqrt(2 / (1 + 0.01^2)), SELU 1: the
    LeCun-normal init its self-normalisation assumes, Klambauer et al. 2017, not the 3/4
    torch's ``calculate_gain("selu")`` returns; the table says why), the same table the
    ``poor_initialization`` rule judges a starting scale by; a LeakyReLU or PReLU module's own
    slope gives sqrt(2 / (1 + slope^2)); otherwise (ELU, GELU, SiLU, Mish, Softplus ...) the
    second-moment gain ``1 / sqrt(E[f(z)^2])``, z ~ N(0, 1), computed by quadrature. ``None``
    means no activation (linear, gain 1). A string is a torch nonlinearity name.

    Example:
        >>> round(activation_gain("relu"), 4), activation_gain("selu")
        (1.4142, 1.0)
    """
    if act is None:
        return 1.0
    if isinstance(act, str):
        gain = init_gain(act) if act in _NONLINEARITIES else None
        if gain is None:
            raise ValueError(
                f"unknown nonlinearity {act!r}; pass one of {list(_NONLINEARITIES)} or an "
                "activation module"
            )
        return gain
    if isinstance(act, (nn.LeakyReLU, nn.PReLU)):
        slope = (
            act.negative_slope
            if isinstance(act, nn.LeakyReLU)
            else float(act.weight.detach().mean())
        )
        return math.sqrt(2.0 / (1.0 + slope**2))
    gain = init_gain(type(act).__name__)
    return gain if gain is not None else _second_moment_gain(act)


#: The torch nonlinearity names ``activation_gain`` accepts as strings.
_NONLINEARITIES = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu")


def _gain_for(t: _Target, acts: dict[str, nn.Module | None], nonlinearity: str | None) -> float:
    """The forced nonlinearity's gain, else that of the cell's own nonlinearity (recurrent
    layers), else that of the activation following the layer."""
    if nonlinearity is not None:
        return activation_gain(nonlinearity)
    if t.own_nonlinearity is not None:
        return activation_gain(t.own_nonlinearity)
    return activation_gain(acts.get(t.layer))


def _check_distribution(distribution: str) -> None:
    if distribution not in ("uniform", "normal"):
        raise ValueError(
            f"expected `distribution` to be 'uniform' or 'normal' but got {distribution!r}"
        )


def init_xavier_(
    model: nn.Module, *, distribution: Distribution = "uniform", gain: float = 1.0
) -> nn.Module:
    """Xavier/Glorot init in place: Var(W) = gain^2 * 2 / (fan_in + fan_out), biases 0.

    Recurrent weight matrices are initialised gate by gate.

    Args:
        model: Modified in place and returned.
        distribution: ``"uniform"`` (Glorot & Bengio's) or ``"normal"``.
        gain: Scale factor (1 in the paper).

    Example:
        >>> from torch import nn
        >>> m = init_xavier_(nn.Sequential(nn.Linear(4, 4), nn.Tanh()))
    """
    _check_distribution(distribution)
    targets = _targets(model)
    with atomic_(model), torch.no_grad():
        for t in targets:
            for w in _chunks(t):
                if distribution == "uniform":
                    nn.init.xavier_uniform_(w, gain=gain)
                else:
                    nn.init.xavier_normal_(w, gain=gain)
        _zero_biases(model)
        reset_norms(model)
    return model


def init_he_(
    model: nn.Module,
    *,
    nonlinearity: str | None = None,
    mode: Literal["fan_in", "fan_out"] = "fan_in",
    distribution: Distribution = "normal",
) -> nn.Module:
    """He/Kaiming init in place: Var(W) = gain^2 / fan, with the gain of the activation
    that follows each layer (detected from the module order, or ``nonlinearity=``).

    For ReLU this is Var(W) = 2 / fan_in (He et al. 2015). Layers followed by no activation
    (the output layer) get gain 1. An ``nn.RNN`` uses the gain of its own nonlinearity
    (tanh or relu); LSTM/GRU gate blocks get gain 1. Biases are set to 0. Activations
    called functionally in ``forward`` (``torch.relu(x)``) are not seen: pass
    ``nonlinearity=`` for such models.

    Args:
        model: Modified in place and returned.
        nonlinearity: Force one nonlinearity for every layer (``"relu"``, ``"tanh"`` ...);
            by default it is detected per layer (see :func:`following_activations`).
        mode: ``"fan_in"`` keeps the forward variance, ``"fan_out"`` the backward one.
        distribution: ``"normal"`` or ``"uniform"`` (same variance).

    Example:
        >>> from torch import nn
        >>> m = init_he_(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1)))
    """
    _check_distribution(distribution)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"expected `mode` to be 'fan_in' or 'fan_out' but got {mode!r}")
    if nonlinearity is not None:
        activation_gain(nonlinearity)  # validate before touching anything
    targets = _targets(model)
    acts = following_activations(model)
    with atomic_(model), torch.no_grad():
        for t in targets:
            gain = _gain_for(t, acts, nonlinearity)
            for w in _chunks(t):
                fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
                std = gain / math.sqrt(fan_in if mode == "fan_in" else fan_out)
                if distribution == "normal":
                    w.normal_(0.0, std)
                else:
                    bound = math.sqrt(3.0) * std
                    w.uniform_(-bound, bound)
        _zero_biases(model)
        reset_norms(model)
    return model


def init_lecun_(model: nn.Module) -> nn.Module:
    """LeCun normal init in place: W ~ N(0, 1 / fan_in), biases 0 (the init SELU's
    self-normalisation assumes, Klambauer et al. 2017).

    Example:
        >>> from torch import nn
        >>> m = init_lecun_(nn.Sequential(nn.Linear(4, 4), nn.SELU()))
    """
    targets = _targets(model)
    with atomic_(model), torch.no_grad():
        for t in targets:
            for w in _chunks(t):
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(w)
                w.normal_(0.0, 1.0 / math.sqrt(fan_in))
        _zero_biases(model)
        reset_norms(model)
    return model


def init_orthogonal_(model: nn.Module, *, gain: float | Literal["auto"] = 1.0) -> nn.Module:
    """Orthogonal init in place (Saxe et al. 2014): each weight matrix (gate block for
    recurrent layers; conv kernels flattened) is ``gain`` times a (semi-)orthogonal matrix.

    Args:
        model: Modified in place and returned.
        gain: A number, or ``"auto"`` for the gain of the activation following each layer
            (see :func:`activation_gain`).

    Example:
        >>> from torch import nn
        >>> m = init_orthogonal_(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), gain="auto")
    """
    if not (gain == "auto" or isinstance(gain, (int, float))):
        raise ValueError(f"expected `gain` to be a number or 'auto' but got {gain!r}")
    targets = _targets(model)
    acts = following_activations(model)
    with atomic_(model), torch.no_grad():
        for t in targets:
            g = float(gain) if gain != "auto" else _gain_for(t, acts, None)
            for w in _chunks(t):
                nn.init.orthogonal_(w, gain=g)
        _zero_biases(model)
        reset_norms(model)
    return model


def init_identity_(
    model: nn.Module, *, scale: float = 1.0, input_std: float | None = 0.001
) -> nn.Module:
    """Identity recurrent init (IRNN, Le, Jaitly & Hinton 2015) of every ``nn.RNN``, in place.

    W_hh = scale * I, all recurrent biases 0, and (as in the paper) input weights
    W_ih ~ N(0, input_std^2); ``input_std=None`` keeps the input weights. Meant for
    ``nn.RNN(nonlinearity="relu")``: with ReLU the identity makes the hidden state an
    integrator, so gradients neither vanish nor explode at first. Other layers are untouched.

    Raises:
        UnsupportedModelError: The model has no ``nn.RNN`` (LSTM/GRU have gates of their
            own and are not IRNNs).

    Example:
        >>> from torch import nn
        >>> rnn = init_identity_(nn.RNN(3, 4, nonlinearity="relu"))
        >>> bool((rnn.weight_hh_l0 == nn.init.eye_(nn.Parameter(rnn.weight_hh_l0.clone()))).all())
        True
    """
    rnns = [(n, m) for n, m in model.named_modules() if type(m) is nn.RNN]
    if not rnns:
        raise UnsupportedModelError(
            f"identity recurrent init needs an nn.RNN; {type(model).__name__} has "
            f"{found_types(model)}. Supported: nn.RNN (ideally nonlinearity='relu')."
        )
    with atomic_(model), torch.no_grad():
        for _, rnn in rnns:
            for pname, p in rnn.named_parameters(recurse=False):
                if pname.startswith("weight_hh"):
                    p.copy_(scale * torch_eye_like(p))
                elif pname.startswith("bias_"):
                    p.zero_()
                elif pname.startswith("weight_ih") and input_std is not None:
                    p.normal_(0.0, input_std)
    return model


def torch_eye_like(p: torch.Tensor) -> torch.Tensor:
    return torch.eye(p.shape[0], p.shape[1], dtype=p.dtype, device=p.device)


InitScheme = Literal["default", "standard", "xavier", "he", "lecun", "orthogonal"]

#: Per-layer schemes of :func:`init_layer_` -> what each sets (the lab's model configs name
#: them; ``init_<scheme>`` is also a model-wide remedy for xavier, he, lecun, orthogonal).
INIT_SCHEMES: dict[str, str] = {
    "default": "PyTorch's own initialisation, left as it is (biases too)",
    "standard": (
        "U[-1/sqrt(fan_in), 1/sqrt(fan_in)], variance 1/(3 fan_in): the heuristic Glorot & "
        "Bengio (2010) call standard"
    ),
    "xavier": "Xavier/Glorot uniform, variance 2/(fan_in + fan_out) (Glorot & Bengio 2010)",
    "he": (
        "He/Kaiming normal, variance gain^2/fan_in with the gain of `nonlinearity` "
        "(2/fan_in for ReLU; He et al. 2015)"
    ),
    "lecun": "LeCun normal, variance 1/fan_in (LeCun et al. 1998; Klambauer et al. 2017)",
    "orthogonal": "a (semi-)orthogonal weight matrix, gain 1 (Saxe et al. 2014)",
}


def init_layer_(layer: nn.Module, scheme: str, *, nonlinearity: str = "relu") -> nn.Module:
    """Initialise one Linear or Conv layer in place by scheme name; its bias becomes 0.

    The schemes are those of :data:`INIT_SCHEMES`. ``"default"`` leaves the layer exactly
    as PyTorch initialised it, bias included. ``"he"`` draws N(0, gain^2 / fan_in) with
    ``gain = activation_gain(nonlinearity)``: by default the ReLU gain sqrt(2), as torch's
    ``kaiming_normal_(nonlinearity="relu")`` (and with it the same random numbers).
    The other schemes take no gain (gain 1).

    Args:
        layer: A Linear, Conv or ConvTranspose layer; modified in place and returned.
        scheme: One of :data:`INIT_SCHEMES`.
        nonlinearity: The activation whose gain ``"he"`` uses (a name
            :func:`activation_gain` accepts); ignored by the other schemes.

    Raises:
        ValueError: Unknown ``scheme`` or ``nonlinearity``.
        TypeError: ``layer`` is not a Linear, Conv or ConvTranspose layer.

    Example:
        >>> from torch import nn
        >>> layer = init_layer_(nn.Linear(256, 64), "standard")
        >>> bool(layer.weight.abs().max() <= 1 / 16), bool((layer.bias == 0).all())
        (True, True)
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"expected `scheme` to be one of {list(INIT_SCHEMES)} but got {scheme!r}")
    if not isinstance(layer, weight_layer_types()):
        raise TypeError(
            f"expected `layer` to be one of {type_names(weight_layer_types())} but got "
            f"{type(layer).__name__}; for a whole model use init_xavier_, init_he_ ..."
        )
    gain = activation_gain(nonlinearity) if scheme == "he" else 1.0  # validates the name
    if scheme == "default":
        return layer
    weight, bias = module_tensor(layer, "weight"), module_tensor(layer, "bias")
    assert weight is not None
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
    with torch.no_grad():
        if scheme == "standard":
            bound = 1.0 / math.sqrt(fan_in)
            weight.uniform_(-bound, bound)
        elif scheme == "xavier":
            nn.init.xavier_uniform_(weight)
        elif scheme == "he":
            weight.normal_(0.0, gain / math.sqrt(fan_in))
        elif scheme == "lecun":
            weight.normal_(0.0, 1.0 / math.sqrt(fan_in))
        else:
            assert scheme == "orthogonal", scheme
            nn.init.orthogonal_(weight)
        if bias is not None:
            bias.zero_()
    return layer
