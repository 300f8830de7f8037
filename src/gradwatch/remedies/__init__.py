"""Remedies: the classic fixes for vanishing and exploding gradients, one call each.

Functions whose name ends in ``_`` change their argument in place (as in torch); the others
return a new model and leave the user's model untouched. :data:`REMEDIES` is the registry
of every remedy id of :data:`gradwatch.diagnosis.REMEDY_IDS` (what it does, its options,
what it needs and returns); :func:`apply` applies one by id; :func:`prescribe` picks the
remedies that fit a model from the findings; ``gradwatch.verify`` (in the lab, which
trains) measures what a remedy changes.

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

from ._common import (
    UnsupportedModelError,
    activation_types,
    copy_model,
    norm_types,
    weight_layer_types,
)
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
    INIT_SCHEMES,
    InitScheme,
    activation_gain,
    following_activations,
    init_he_,
    init_identity_,
    init_layer_,
    init_lecun_,
    init_orthogonal_,
    init_xavier_,
)
from .lower_lr import lower_lr, raise_lr
from .lsuv import init_lsuv_
from .normalization import insert_batchnorm, insert_layernorm, insert_norm
from .prescribe import Prescription, applicability, prescribe
from .pretraining import Pretrained, pretrain_layerwise
from .registry import REMEDIES, REQUIRED, Need, Remedy, apply
from .residual import Residual, add_residual
from .warmup import lr_warmup, untuned_warmup_steps

__all__ = [
    "ACTIVATION_NAMES",
    "INIT_SCHEMES",
    "REMEDIES",
    "REQUIRED",
    "ActivationSwap",
    "ClipResult",
    "ClipStats",
    "GradientClipper",
    "HardwareReport",
    "InitScheme",
    "LSTMAsRNN",
    "MaxNormSuggestion",
    "Need",
    "NonFiniteGradientError",
    "Prescription",
    "Pretrained",
    "Remedy",
    "Residual",
    "UnsupportedModelError",
    "activation_gain",
    "activation_types",
    "add_residual",
    "applicability",
    "apply",
    "clip_grad_adaptive_",
    "clip_grad_norm_",
    "clip_grad_value_",
    "copy_model",
    "fastest_device",
    "following_activations",
    "init_he_",
    "init_identity_",
    "init_layer_",
    "init_lecun_",
    "init_lsuv_",
    "init_orthogonal_",
    "init_xavier_",
    "insert_batchnorm",
    "insert_layernorm",
    "insert_norm",
    "lower_lr",
    "lr_warmup",
    "make_activation",
    "measure_speedup",
    "move_to_device_",
    "norm_types",
    "prescribe",
    "pretrain_layerwise",
    "raise_lr",
    "reduce_depth",
    "replace_rnn",
    "suggest_max_norm",
    "swap_activations",
    "untuned_warmup_steps",
    "weight_layer_types",
]
