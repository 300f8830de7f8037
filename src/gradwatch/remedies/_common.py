"""Shared helpers of the remedies: errors, module kinds, copying and atomic in-place edits.

Every transform works on a copy and only hands it back when it succeeded, and every
in-place function (name ending in ``_``) restores the original parameters and buffers when
it fails, so a failure never leaves a model half-modified.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
from torch import nn

from .._activations import KINDS

M = TypeVar("M", bound=nn.Module)


class UnsupportedModelError(ValueError):
    """A remedy cannot be applied to this model: the message names what was found and
    what the remedy supports."""


def check_optimizer(remedy: str, optimizer: object) -> None:
    """Raise a TypeError naming ``remedy`` unless ``optimizer`` is a torch optimizer (the
    learning-rate remedies schedule the user's own optimizer)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"{remedy}: expected `optimizer` to be a torch.optim.Optimizer but got "
            f"{type(optimizer).__name__}; pass the optimizer that trains the model"
        )


def copy_model(model: M) -> M:
    """A deep copy of ``model`` (parameters, buffers, submodules); ``model`` is untouched.

    Raises:
        TypeError: When ``model`` is not an ``nn.Module`` or cannot be deep-copied.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected `model` to be a torch.nn.Module but got {type(model).__name__}")
    try:
        return copy.deepcopy(model)
    except Exception as exc:  # deepcopy failures come in many types (pickling, locks ...)
        raise TypeError(
            f"cannot deep-copy the model ({type(exc).__name__}: {exc}); remedies work on a "
            "copy so that the user's model stays untouched. Make the model deep-copyable "
            "(no open files, locks or generators held as attributes)."
        ) from exc


@contextmanager
def atomic_(model: nn.Module) -> Iterator[None]:
    """Restore every parameter and buffer of ``model`` if the body raises.

    Used by the in-place remedies so that an error half-way (a layer that cannot be
    initialised, a batch of the wrong shape) leaves the model exactly as it was.
    """
    saved = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    try:
        yield
    except BaseException:
        with torch.no_grad():
            for k, v in model.state_dict(keep_vars=True).items():
                if k in saved and v.shape == saved[k].shape:
                    v.data.copy_(saved[k])
        raise


def set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule called ``name`` (dotted path) of ``root`` by ``new``."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


#: Activation classes of the one table that the remedies leave alone. The shrinkage functions
#: (sparse-coding thresholds, zero on a band around 0) are recognised by the recorder, but no
#: remedy has ever swapped, normalised after or wrapped them; counting them as activations
#: would change which modules swap_activations replaces and where blocks end.
_NOT_REMEDIED: frozenset[str] = frozenset({"Softshrink", "Hardshrink"})


@functools.cache  # called once per module in model walks; the table never changes
def activation_types() -> tuple[type[nn.Module], ...]:
    """Element-wise hidden-layer activation modules the remedies recognise (not Softmax).

    The activation classes of :data:`gradwatch._activations.KINDS`, in its order, without
    the shrinkage functions.
    """
    return tuple(getattr(nn, name) for name in KINDS if name not in _NOT_REMEDIED)


def norm_types() -> tuple[type[nn.Module], ...]:
    """Normalisation modules (they keep the shape of their input)."""
    return (
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.BatchNorm3d,
        nn.SyncBatchNorm,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.InstanceNorm1d,
        nn.InstanceNorm2d,
        nn.InstanceNorm3d,
        nn.RMSNorm,
    )


def weight_layer_types() -> tuple[type[nn.Module], ...]:
    """Layers whose weights the init remedies set: dense and convolutional layers."""
    return (
        nn.Linear,
        nn.Conv1d,
        nn.Conv2d,
        nn.Conv3d,
        nn.ConvTranspose1d,
        nn.ConvTranspose2d,
        nn.ConvTranspose3d,
    )


def is_elementwise(module: nn.Module) -> bool:
    """True for modules that keep the shape of their input and own no shape-changing
    weights: activations, norms, dropout, identity."""
    return isinstance(
        module,
        (*activation_types(), *norm_types(), nn.Dropout, nn.AlphaDropout, nn.Identity),
    )


def type_names(types: tuple[type, ...]) -> str:
    return ", ".join(f"nn.{t.__name__}" for t in types)
