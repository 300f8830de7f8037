"""How a lab run applies its remedy ids: the library does the work, the lab builds the model.

Three kinds of remedy, each applied where it belongs:

* **Structural** remedies (an activation, an initialisation, a normalisation, skip
  connections, less depth, a gated cell) *rewrite the model config*
  (:func:`remedied_model_config`), and the lab builds the remedied network from scratch
  with the run's seed. This is the lab's own model-building concern, not a second remedy
  implementation: a lab model is defined by its config, so the saved ``lab_config.json``
  shows exactly what was trained, the remedied net draws its initial weights from the same
  seed as the baseline, and the MLP's residual blocks are the pre-activation form
  (He et al., 2016) that ``gradwatch.remedies.add_residual`` cannot produce from a flat
  stack. The building blocks themselves (activation table, ``Residual``, init gains) are
  the library's.
* **Data-dependent** remedies (LSUV, layer-wise pretraining) are applied to the built model
  by ``gradwatch.remedies.apply`` (:func:`apply_to_built`).
* **Training-time** remedies (gradient clipping, a learning-rate warm-up, a lower
  learning rate) become ``GradientClipper``\\ s and schedulers made by
  ``gradwatch.remedies.apply`` inside the training loop (:func:`training_specs`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from gradwatch.diagnosis import ACTIVATION_REMEDY_IDS
from gradwatch.remedies import apply
from gradwatch.remedies.registry import TRAINING_TIME

from .models import CNNConfig, MLPConfig, ModelConfig, RecurrentConfig
from .training import RemedySpec, index_batches

_INIT_REMEDIES = {
    "init_xavier": "xavier",
    "init_he": "he",
    "init_lecun": "lecun",
    "init_orthogonal": "orthogonal",
}
_STRUCTURAL = ("batchnorm", "layernorm", "residual", "reduce_depth")

#: The remedies the lab can apply to each model kind: the structural ones its model configs
#: can express, plus the library-applied ones that fit the model.
MODEL_REMEDIES: dict[str, tuple[str, ...]] = {
    "mlp": (
        *ACTIVATION_REMEDY_IDS,
        *_STRUCTURAL,
        "init_xavier",
        "init_he",
        "init_lecun",
        "init_orthogonal",
        "init_lsuv",
        "layerwise_pretraining",
        *TRAINING_TIME,
    ),
    "cnn": (
        *ACTIVATION_REMEDY_IDS,
        "batchnorm",
        "residual",
        "init_xavier",
        "init_he",
        "init_lecun",
        "init_orthogonal",
        "init_lsuv",
        *TRAINING_TIME,
    ),
    "recurrent": ("lstm", "gru", "init_orthogonal", "init_identity", *TRAINING_TIME),
    "transformer": (*TRAINING_TIME,),
}

#: Default options per remedy, each with its reason.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    # max_norm 1.0: Pascanu et al. (2013) clip at a threshold near the typical norm; 1 is the
    # common default for small nets with unit-scale losses.
    "clip_norm": {"max_norm": 1.0},
    "clip_value": {"clip_value": 0.5},
    # AGC (Brock et al., 2021): lambda = 0.01 for large batches; small batches tolerate more.
    "clip_adaptive": {"clipping": 0.1, "eps": 1e-3},
    # steps None: 2 / (1 - beta2) for Adam (Ma & Yarats 2021); an SGD run must set it.
    "lr_warmup": {"steps": None},
    # factor 0.1: a decade, the classic first try (gradwatch.remedies.lower_lr).
    "lower_lr": {"factor": 0.1},
    # factor 10: a decade up, the mirror of lower_lr's first try (gw.prescribe reads the
    # factor off a trace's steps instead: gradwatch.remedies.lower_lr.suggest_raise).
    "raise_lr": {"factor": 10.0},
    # depth None: a quarter of the layers, at least 2 (20 sigmoid layers -> 5).
    "reduce_depth": {"depth": None},
    # Greedy autoencoder pretraining (Bengio et al., 2007): a few hundred small steps per layer.
    "layerwise_pretraining": {"steps_per_layer": 100, "lr": 0.01, "batch_size": 64},
}

#: Lab option names that ``gradwatch.remedies.apply`` spells differently (the lab's config
#: files keep their names).
_LIBRARY_NAMES: dict[str, dict[str, str]] = {"clip_adaptive": {"clipping": "clip_factor"}}


def options_for(remedy: str, given: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The remedy's defaults overridden by the config's ``remedy_options``; unknown keys fail.

    Example:
        >>> options_for("clip_norm", {"clip_norm": {"max_norm": 0.5}})
        {'max_norm': 0.5}
    """
    defaults = DEFAULT_OPTIONS.get(remedy, {})
    user = dict(given.get(remedy, {}))
    unknown = sorted(set(user) - set(defaults))
    if unknown:
        raise ValueError(
            f"remedy_options.{remedy}.{unknown[0]} is not an option of {remedy!r}; "
            f"allowed: {sorted(defaults) or 'none'}"
        )
    return {**defaults, **user}


def remedied_model_config(
    model: ModelConfig, remedies: tuple[str, ...], options: Mapping[str, Mapping[str, Any]]
) -> ModelConfig:
    """The model config after the structural remedies, applied in order.

    Example:
        >>> remedied_model_config(MLPConfig(activation="sigmoid"), ("relu", "init_he"), {})
        MLPConfig(depth=4, width=64, activation='relu', init='he', norm='none', residual=False)
    """
    for rid in remedies:
        change: dict[str, Any] = {}
        if rid in ACTIVATION_REMEDY_IDS:
            change["activation"] = rid
        elif rid in _INIT_REMEDIES and not isinstance(model, RecurrentConfig):
            change["init"] = _INIT_REMEDIES[rid]
        elif rid in ("init_orthogonal", "init_identity"):
            change["init"] = rid.removeprefix("init_")
        elif rid in ("batchnorm", "layernorm"):
            change = {"batchnorm": True} if isinstance(model, CNNConfig) else {"norm": rid}
        elif rid == "residual":
            change["residual"] = True
        elif rid == "reduce_depth":
            assert isinstance(model, (MLPConfig, CNNConfig))
            depth = options_for(rid, options)["depth"]
            change["depth"] = max(2, model.depth // 4) if depth is None else int(depth)
        elif rid in ("lstm", "gru"):
            change["cell"] = rid
        if change:
            model = dataclasses.replace(model, **change)
    return model


def apply_to_built(
    model: nn.Module,
    *,
    remedies: tuple[str, ...],
    options: Mapping[str, Mapping[str, Any]],
    x_train: torch.Tensor,
    gen: torch.Generator,
    batch_size: int,
) -> nn.Module:
    """The built model after the data-dependent remedies, applied by ``remedies.apply``.

    ``init_lsuv`` scales the layers on one batch of ``max(batch_size, 64)`` training inputs;
    ``layerwise_pretraining`` trains each hidden layer for ``steps_per_layer`` Adam steps on
    batches of ``x_train``. Both batches are drawn from ``gen``, in that order.
    """
    if "init_lsuv" in remedies:
        idx = torch.randperm(len(x_train), generator=gen)[: max(batch_size, 64)]
        model = _as_module(apply(model, "init_lsuv", inputs=x_train[idx]))
    if "layerwise_pretraining" in remedies:
        if not isinstance(model, nn.Sequential):
            raise ValueError(
                f"layerwise_pretraining needs the lab's MLP, got a {type(model).__name__}"
            )
        opts = options_for("layerwise_pretraining", options)
        # One epoch over steps_per_layer batches = steps_per_layer Adam steps per layer.
        batches = index_batches(len(x_train), opts["batch_size"], gen)
        data = [x_train[next(batches)] for _ in range(opts["steps_per_layer"])]
        # A plain nn.Sequential over the same modules: remedies slices the stack, and
        # slicing a Sequential subclass (MLP) calls the subclass's own constructor.
        plain = nn.Sequential(*model)
        model = _as_module(
            apply(plain, "layerwise_pretraining", data=data, epochs=1, lr=opts["lr"])
        )
    return model


def _as_module(out: object) -> nn.Module:
    assert isinstance(out, nn.Module)  # apply returns a model for every non-clip remedy
    return out


def training_specs(
    remedies: tuple[str, ...], options: Mapping[str, Mapping[str, Any]]
) -> list[RemedySpec]:
    """The training-time remedies of a run (clippers, a warm-up) with their
    ``remedies.apply`` options, in order.

    Example:
        >>> training_specs(("relu", "clip_adaptive"), {})
        [('clip_adaptive', {'clip_factor': 0.1, 'eps': 0.001})]
    """
    specs: list[RemedySpec] = []
    for rid in remedies:
        if rid in TRAINING_TIME:
            names = _LIBRARY_NAMES.get(rid, {})
            opts = {names.get(k, k): v for k, v in options_for(rid, options).items()}
            specs.append((rid, opts))
    return specs
