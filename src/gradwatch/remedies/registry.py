"""The remedy registry: :data:`REMEDIES` maps every remedy id to a :class:`Remedy`, and
:func:`apply` applies one by id.

As :data:`gradwatch.diagnosis.RULES` is the one table of rules, this is the one table of
remedies: what each does (one line), its keyword options and their defaults (read from the
signature of the function that implements it, so they cannot drift), the data it cannot
work without, and whether it gives back a new model or a gradient clipper. ``apply``, the
lab and ``prescribe`` all read it; nothing else dispatches on a remedy id.

Example:
    >>> from gradwatch.remedies import REMEDIES
    >>> REMEDIES["init_lsuv"].required, REMEDIES["clip_norm"].returns
    (('inputs',), 'clipper')
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from .._activations import SWAPPABLE
from ..diagnosis import ACTIVATION_REMEDY_IDS, REMEDY_IDS
from ._common import copy_model
from .activations import swap_activations
from .clipping import ClipMode, GradientClipper
from .depth import reduce_depth
from .gating import replace_rnn
from .hardware import fastest_device
from .init import (
    init_he_,
    init_identity_,
    init_lecun_,
    init_orthogonal_,
    init_xavier_,
)
from .lower_lr import lower_lr, raise_lr
from .lsuv import init_lsuv_
from .normalization import NormKind, insert_norm
from .pretraining import pretrain_layerwise
from .residual import add_residual
from .warmup import lr_warmup, optimizes

__all__ = ["REMEDIES", "REQUIRED", "TRAINING_TIME", "Need", "Remedy", "apply"]

#: The default of an option the caller must pass (the marker ``Prescription.options`` uses).
REQUIRED: Final = "<required>"

#: A remedy gives back a model, a gradient clipper or a learning-rate scheduler.
Transform = Callable[..., "nn.Module | GradientClipper | LRScheduler"]


@dataclass(frozen=True)
class Need:
    """Data (or a training object) a remedy cannot work without, passed by the caller as the
    keyword ``option``.

    Attributes:
        option: The keyword (``"inputs"``).
        what: What to pass (``"one batch of model inputs"``).
        example: A value to show in the error message (``"x_batch"``).
        kind: What it is, for the message: ``"data"``, ``"the optimizer"``.
    """

    option: str
    what: str
    example: str
    kind: str = "data"

    def message(self, remedy_id: str) -> str:
        """The error :func:`apply` raises when the data (or setting) is missing."""
        return (
            f"remedy {remedy_id!r} needs {self.kind}: pass {self.option}=<{self.what}>, e.g. "
            f"apply(model, {remedy_id!r}, {self.option}={self.example})"
        )


@dataclass(frozen=True)
class Remedy:
    """One remedy of the registry.

    Attributes:
        id: The remedy id (one of :data:`gradwatch.diagnosis.REMEDY_IDS`).
        description: What it does, in one line.
        returns: ``"model"``: a new model, the user's model untouched; ``"clipper"``: a
            :class:`~gradwatch.remedies.GradientClipper` over the model's parameters,
            attached to the optimizer given as ``optimizer=`` (none by default);
            ``"scheduler"``: a learning-rate scheduler on the optimizer given as
            ``optimizer=``, whose ``step()`` the training loop calls after each
            ``optimizer.step()``.
        transform: ``transform(model, **options)`` does the work; call it through
            :func:`apply`, which checks the id, the model and the ``needs`` first.
        options: Every keyword option and its default; :data:`REQUIRED` marks those the
            caller must pass. Activation remedies also pass any other keyword to the new
            activation's constructor (``negative_slope=0.1``).
        needs: The data among the required options (a batch, batches), with what to pass.
    """

    id: str
    description: str
    returns: Literal["model", "clipper", "scheduler"]
    transform: Transform = field(repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)
    needs: tuple[Need, ...] = ()

    def __post_init__(self) -> None:
        # read-only: the registry is shared by every caller in the process
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def required(self) -> tuple[str, ...]:
        """The options the caller must pass."""
        return tuple(k for k, v in self.options.items() if isinstance(v, str) and v == REQUIRED)


def _defaults(fn: Callable[..., Any], *names: str) -> dict[str, Any]:
    """``name -> default`` of ``fn``'s parameters, :data:`REQUIRED` where there is none."""
    params = inspect.signature(fn).parameters
    return {
        n: REQUIRED if params[n].default is inspect.Parameter.empty else params[n].default
        for n in names
    }


# --- transforms: each takes (model, **options) and never modifies the model it is given.
# Those that warn use stacklevel=3 so the warning points at the caller of apply().


def _swap_to(to: str) -> Transform:
    def transform(model: nn.Module, **options: Any) -> nn.Module:
        swap = swap_activations(model, to, **options)
        if swap.unchanged_functional or swap.trace_error:
            warnings.warn(swap.summary(), UserWarning, stacklevel=3)
        return swap.model

    return transform


def _on_a_copy(init_: Callable[..., nn.Module]) -> Transform:
    """An in-place init remedy applied to a copy of the model."""

    def transform(model: nn.Module, **options: Any) -> nn.Module:
        new = copy_model(model)
        init_(new, **options)
        return new

    return transform


def _norm(kind: NormKind) -> Transform:
    def transform(model: nn.Module, **options: Any) -> nn.Module:
        return insert_norm(model, kind, **options)

    return transform


def _gated(cell: Literal["lstm", "gru"]) -> Transform:
    def transform(model: nn.Module, **options: Any) -> nn.Module:
        return replace_rnn(model, cell, **options)

    return transform


def _pretrained(model: nn.Module, **options: Any) -> nn.Module:
    return pretrain_layerwise(model, **options).model


def _clipper(mode: ClipMode) -> Transform:
    def transform(
        model: nn.Module, *, optimizer: torch.optim.Optimizer | None = None, **options: Any
    ) -> GradientClipper:
        clipper = GradientClipper(model, mode=mode, **options)
        return clipper.attach(optimizer) if optimizer is not None else clipper

    return transform


def _scheduler(remedy_id: str, make: Callable[..., LRScheduler]) -> Transform:
    """A scheduler remedy: ``make(optimizer, **options)`` on the optimizer that trains the
    model, checked to be one before its rates are touched."""

    def transform(
        model: nn.Module, *, optimizer: torch.optim.Optimizer | None = None, **options: Any
    ) -> LRScheduler:
        if optimizer is None:
            raise ValueError(_OPTIMIZER.message(remedy_id))
        if isinstance(optimizer, torch.optim.Optimizer) and not optimizes(optimizer, model):
            raise ValueError(
                f"{remedy_id}: `optimizer` updates none of the model's parameters; pass the "
                "optimizer that trains this model"
            )
        return make(optimizer, **options)  # checks the optimizer's type and the options

    return transform


def _on_fastest_device(
    model: nn.Module, *, device: torch.device | str | None = None, **unexpected: Any
) -> nn.Module:
    if unexpected:
        raise TypeError(f"unexpected options for 'faster_hardware': {sorted(unexpected)}")
    target = fastest_device() if device is None else device
    if fastest_device().type == "cpu" and device is None:
        warnings.warn(
            "faster_hardware: no accelerator (CUDA or MPS) is available on this machine; the "
            "model stays on the CPU",
            UserWarning,
            stacklevel=3,
        )
    return copy_model(model).to(target)


def _clip_options(mode: ClipMode, *names: str) -> dict[str, Any]:
    """The clipper's own options ``names``, then those every clipper takes."""
    return {
        **_defaults(GradientClipper, *names, "error_if_nonfinite", "watch"),
        **_defaults(_clipper(mode), "optimizer"),
    }


_BATCH = Need("inputs", "one batch of model inputs", "x_batch")
_OPTIMIZER = Need("optimizer", "the optimizer that trains the model", "opt", "the optimizer")
_BATCHES = Need("data", "batches of inputs or (inputs, targets)", "loader")

_ALL: tuple[Remedy, ...] = (
    Remedy(
        "residual",
        "wrap each run of shape-preserving blocks as x + scale * f(x) (He et al. 2016)",
        "model",
        add_residual,
        _defaults(add_residual, "scale", "block_size"),
    ),
    Remedy(
        "layerwise_pretraining",
        "pretrain each hidden layer of an nn.Sequential MLP as an autoencoder, bottom first",
        "model",
        _pretrained,
        _defaults(pretrain_layerwise, "data", "epochs", "lr", "noise_std"),
        (_BATCHES,),
    ),
    Remedy(
        "lstm",
        "replace every nn.RNN by a new nn.LSTM of the same sizes",
        "model",
        _gated("lstm"),
        _defaults(replace_rnn, "wrap"),
    ),
    Remedy(
        "gru",
        "replace every nn.RNN by a new nn.GRU of the same sizes",
        "model",
        _gated("gru"),
        _defaults(replace_rnn, "wrap"),
    ),
    *(
        Remedy(
            act,
            f"swap the hidden activation modules for nn.{SWAPPABLE[act]}",
            "model",
            _swap_to(act),
            _defaults(swap_activations, "include_output", "rewrite_functional"),
        )
        for act in ACTIVATION_REMEDY_IDS
    ),
    Remedy(
        "batchnorm",
        "insert BatchNorm between each Linear/Conv and the activation after it",
        "model",
        _norm("batchnorm"),
    ),
    Remedy(
        "layernorm",
        "insert LayerNorm (GroupNorm(1, C) after a conv) between each layer and its activation",
        "model",
        _norm("layernorm"),
    ),
    Remedy(
        "init_xavier",
        "re-initialise the weights Xavier/Glorot, Var 2/(fan_in + fan_out); biases 0",
        "model",
        _on_a_copy(init_xavier_),
        _defaults(init_xavier_, "distribution", "gain"),
    ),
    Remedy(
        "init_he",
        "re-initialise the weights He/Kaiming with the gain of each layer's activation; biases 0",
        "model",
        _on_a_copy(init_he_),
        _defaults(init_he_, "nonlinearity", "mode", "distribution"),
    ),
    Remedy(
        "init_lecun",
        "re-initialise the weights LeCun normal, Var 1/fan_in (SELU's init); biases 0",
        "model",
        _on_a_copy(init_lecun_),
    ),
    Remedy(
        "init_orthogonal",
        "re-initialise the weights (semi-)orthogonal, times a gain (Saxe et al. 2014); biases 0",
        "model",
        _on_a_copy(init_orthogonal_),
        _defaults(init_orthogonal_, "gain"),
    ),
    Remedy(
        "init_identity",
        "identity recurrent weights for every nn.RNN (IRNN, Le, Jaitly & Hinton 2015)",
        "model",
        _on_a_copy(init_identity_),
        _defaults(init_identity_, "scale", "input_std"),
    ),
    Remedy(
        "init_lsuv",
        "orthogonal weights, then each layer scaled to unit output variance on a batch (LSUV)",
        "model",
        _on_a_copy(init_lsuv_),
        _defaults(init_lsuv_, "inputs", "tol", "max_iter"),
        (_BATCH,),
    ),
    Remedy(
        "clip_norm",
        "before each optimizer step, scale the gradients down to a global norm <= max_norm",
        "clipper",
        _clipper("norm"),
        {**_clip_options("norm", "max_norm", "norm_type"), "max_norm": REQUIRED},
    ),
    Remedy(
        "clip_value",
        "before each optimizer step, clamp every gradient entry to [-clip_value, clip_value]",
        "clipper",
        _clipper("value"),
        {**_clip_options("value", "clip_value"), "clip_value": REQUIRED},
    ),
    Remedy(
        "clip_adaptive",
        "before each step, clip each unit's gradient norm to clip_factor x its weight norm (AGC)",
        "clipper",
        _clipper("adaptive"),
        _clip_options("adaptive", "clip_factor", "eps"),
    ),
    Remedy(
        "lr_warmup",
        "raise the learning rate linearly to its value over the first steps (a scheduler)",
        "scheduler",
        _scheduler("lr_warmup", lr_warmup),
        {"optimizer": REQUIRED, **_defaults(lr_warmup, "steps")},
        (_OPTIMIZER,),
    ),
    Remedy(
        "lower_lr",
        "multiply every learning rate by factor from now on (a scheduler)",
        "scheduler",
        _scheduler("lower_lr", lower_lr),
        {"optimizer": REQUIRED, **_defaults(lower_lr, "factor")},
        (_OPTIMIZER,),
    ),
    Remedy(
        "raise_lr",
        "multiply every learning rate by factor (above 1) from now on (a scheduler)",
        "scheduler",
        _scheduler("raise_lr", raise_lr),
        {"optimizer": REQUIRED, **_defaults(raise_lr, "factor")},
        (_OPTIMIZER,),
    ),
    Remedy(
        "reduce_depth",
        "drop the middle shape-preserving blocks of the deepest nn.Sequential stack",
        "model",
        reduce_depth,
        _defaults(reduce_depth, "keep", "drop"),
    ),
    Remedy(
        "faster_hardware",
        "a copy of the model on the fastest device (CUDA, else MPS, else CPU)",
        "model",
        _on_fastest_device,
        _defaults(_on_fastest_device, "device"),
    ),
)

#: Every remedy by id, in :data:`gradwatch.diagnosis.REMEDY_IDS` order.
REMEDIES: dict[str, Remedy] = {r.id: r for r in _ALL}
#: The remedies that act during training (a clipper, a scheduler) rather than on the model.
TRAINING_TIME: tuple[str, ...] = tuple(r.id for r in _ALL if r.returns != "model")

if (
    tuple(REMEDIES) != REMEDY_IDS
):  # pragma: no cover - a registry/id mismatch is a programming error
    raise RuntimeError(f"remedy registry {tuple(REMEDIES)} does not match REMEDY_IDS {REMEDY_IDS}")


def apply(
    model: nn.Module, remedy_id: str, **options: Any
) -> nn.Module | GradientClipper | LRScheduler:
    """Apply one remedy by id; the user's model is never modified.

    Model remedies return a new model: activations (``"relu"``, ``"tanh"`` ...; options of
    :func:`swap_activations`), ``"init_*"`` (a re-initialised copy; ``"init_lsuv"`` needs
    ``inputs=`` a batch), ``"batchnorm"``/``"layernorm"``, ``"residual"`` (``scale=``,
    ``block_size=``), ``"lstm"``/``"gru"`` (``wrap=``), ``"reduce_depth"`` (``keep=``,
    ``drop=``), ``"layerwise_pretraining"`` (needs ``data=``; ``epochs=``, ``lr=``,
    ``noise_std=``) and ``"faster_hardware"`` (a copy on the fastest device; ``device=``).
    ``"clip_norm"`` (needs ``max_norm=``), ``"clip_value"`` (needs ``clip_value=``) and
    ``"clip_adaptive"`` return a :class:`GradientClipper` over the model's parameters,
    attached to ``optimizer=`` when given (and logging into ``watch=``). ``"lr_warmup"``
    (needs ``optimizer=``; ``steps=``), ``"lower_lr"`` and ``"raise_lr"`` (need ``optimizer=``;
    ``factor=``)
    return a learning-rate scheduler on that optimizer: call its ``step()`` after each
    ``optimizer.step()``. Every remedy's options and defaults
    are in :data:`REMEDIES`.

    Raises:
        ValueError: Unknown remedy id, or a needed option missing (the message names it).
        UnsupportedModelError: The remedy does not fit the model (the message says why).

    Example:
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Linear(2, 4), nn.Sigmoid(), nn.Linear(4, 1))
        >>> apply(m, "relu")[1]
        ReLU()
    """
    if remedy_id not in REMEDY_IDS:
        raise ValueError(f"unknown remedy id {remedy_id!r}; expected one of {list(REMEDY_IDS)}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected `model` to be a torch.nn.Module but got {type(model).__name__}")
    remedy = REMEDIES[remedy_id]
    for need in remedy.needs:
        if need.option not in options:
            raise ValueError(need.message(remedy_id))
    return remedy.transform(model, **options)
