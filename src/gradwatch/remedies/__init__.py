"""Remedies: the classic fixes for vanishing and exploding gradients, one call each.

Functions whose name ends in ``_`` change their argument in place (as in torch); the others
return a new model and leave the user's model untouched. :func:`apply` dispatches every
remedy id of :data:`gradwatch.diagnosis.REMEDY_IDS`; :func:`prescribe` picks the remedies
that fit a model from the findings; ``gradwatch.verify`` (in the lab, which trains)
measures what a remedy changes.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from gradwatch import remedies
    >>> mlp = nn.Sequential(nn.Linear(4, 16), nn.Sigmoid(), nn.Linear(16, 16), nn.Sigmoid(),
    ...                     nn.Linear(16, 1))
    >>> fixed = remedies.apply(mlp, "residual")
    >>> type(fixed[2]).__name__
    'Residual'
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from torch import nn

from gradwatch.diagnosis import ACTIVATION_REMEDY_IDS, REMEDY_IDS

from ._common import UnsupportedModelError, copy_model
from .activations import ACTIVATION_NAMES, ActivationSwap, make_activation, swap_activations
from .clipping import (
    ClipResult,
    ClipStats,
    GradientClipper,
    MaxNormSuggestion,
    NonFiniteGradientError,
    clip_grad_adaptive_,
    clip_grad_norm_,
    clip_grad_value_,
    suggest_max_norm,
)
from .depth import reduce_depth
from .gating import LSTMAsRNN, replace_rnn
from .hardware import HardwareReport, fastest_device, measure_speedup, move_to_device_
from .init import (
    activation_gain,
    following_activations,
    init_he_,
    init_identity_,
    init_lecun_,
    init_lsuv_,
    init_orthogonal_,
    init_xavier_,
)
from .normalization import insert_batchnorm, insert_layernorm, insert_norm
from .prescribe import Prescription, applicability, prescribe
from .pretraining import Pretrained, pretrain_layerwise
from .residual import Residual, add_residual

__all__ = [
    "ACTIVATION_NAMES",
    "ActivationSwap",
    "ClipResult",
    "ClipStats",
    "GradientClipper",
    "HardwareReport",
    "LSTMAsRNN",
    "MaxNormSuggestion",
    "NonFiniteGradientError",
    "Prescription",
    "Pretrained",
    "Residual",
    "UnsupportedModelError",
    "activation_gain",
    "add_residual",
    "applicability",
    "apply",
    "clip_grad_adaptive_",
    "clip_grad_norm_",
    "clip_grad_value_",
    "fastest_device",
    "following_activations",
    "init_he_",
    "init_identity_",
    "init_lecun_",
    "init_lsuv_",
    "init_orthogonal_",
    "init_xavier_",
    "insert_batchnorm",
    "insert_layernorm",
    "insert_norm",
    "make_activation",
    "measure_speedup",
    "move_to_device_",
    "prescribe",
    "pretrain_layerwise",
    "reduce_depth",
    "replace_rnn",
    "suggest_max_norm",
    "swap_activations",
]

_INITS: dict[str, Callable[..., nn.Module]] = {
    "init_xavier": init_xavier_,
    "init_he": init_he_,
    "init_lecun": init_lecun_,
    "init_orthogonal": init_orthogonal_,
    "init_identity": init_identity_,
}
_CLIP_MODES = {"clip_norm": "norm", "clip_value": "value", "clip_adaptive": "adaptive"}


def apply(model: nn.Module, remedy_id: str, **options: Any) -> nn.Module | GradientClipper:
    """Apply one remedy by id; the user's model is never modified.

    Model remedies return a new model: activations (``"relu"``, ``"tanh"`` ...; options of
    :func:`swap_activations`), ``"init_*"`` (a re-initialised copy; ``"init_lsuv"`` needs
    ``inputs=`` a batch), ``"batchnorm"``/``"layernorm"``, ``"residual"`` (``scale=``,
    ``block_size=``), ``"lstm"``/``"gru"`` (``wrap=``), ``"reduce_depth"`` (``keep=``,
    ``drop=``), ``"layerwise_pretraining"`` (needs ``data=``; ``epochs=``, ``lr=``,
    ``noise_std=``) and ``"faster_hardware"`` (a copy on the fastest device; ``device=``).
    ``"clip_norm"`` (needs ``max_norm=``), ``"clip_value"`` (needs ``clip_value=``) and
    ``"clip_adaptive"`` return a :class:`GradientClipper` over the model's parameters,
    attached to ``optimizer=`` when given (and logging into ``watch=``).

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
    if remedy_id in ACTIVATION_REMEDY_IDS:
        swap = swap_activations(model, remedy_id, **options)
        if swap.unchanged_functional or swap.trace_error:
            warnings.warn(swap.summary(), UserWarning, stacklevel=2)
        return swap.model
    if remedy_id in _INITS:
        new = copy_model(model)
        _INITS[remedy_id](new, **options)
        return new
    if remedy_id == "init_lsuv":
        if "inputs" not in options:
            raise ValueError(
                "remedy 'init_lsuv' needs data: pass inputs=<one batch of model inputs>, e.g. "
                "apply(model, 'init_lsuv', inputs=x_batch)"
            )
        new = copy_model(model)
        init_lsuv_(new, options.pop("inputs"), **options)
        return new
    if remedy_id in ("batchnorm", "layernorm"):
        return insert_norm(model, remedy_id, **options)  # type: ignore[arg-type]
    if remedy_id == "residual":
        return add_residual(model, **options)
    if remedy_id in ("lstm", "gru"):
        return replace_rnn(model, remedy_id, **options)  # type: ignore[arg-type]
    if remedy_id == "reduce_depth":
        return reduce_depth(model, **options)
    if remedy_id == "layerwise_pretraining":
        if "data" not in options:
            raise ValueError(
                "remedy 'layerwise_pretraining' needs data: pass data=<batches of inputs or "
                "(inputs, targets)>, e.g. apply(model, 'layerwise_pretraining', data=loader)"
            )
        return pretrain_layerwise(model, options.pop("data"), **options).model
    if remedy_id in _CLIP_MODES:
        optimizer = options.pop("optimizer", None)
        clipper = GradientClipper(model, mode=_CLIP_MODES[remedy_id], **options)  # type: ignore[arg-type]
        return clipper.attach(optimizer) if optimizer is not None else clipper
    assert remedy_id == "faster_hardware", remedy_id
    device = options.pop("device", None)
    if options:
        raise TypeError(f"unexpected options for 'faster_hardware': {sorted(options)}")
    target = fastest_device() if device is None else device
    if fastest_device().type == "cpu" and device is None:
        warnings.warn(
            "faster_hardware: no accelerator (CUDA or MPS) is available on this machine; the "
            "model stays on the CPU",
            UserWarning,
            stacklevel=2,
        )
    return copy_model(model).to(target)
