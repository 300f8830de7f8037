"""How a lab run applies its remedy ids.

Structural remedies (an activation, an initialisation, a normalisation, skip connections,
less depth, a gated cell) are applied by *rewriting the model config*: the lab then builds
the remedied network from scratch with the run's seed, and the saved config shows exactly
what was trained. Data-dependent and training-time remedies (LSUV, layer-wise pretraining,
gradient clipping) act on the built model or on each step, see :func:`prepare_model` and
:func:`clipper`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from gradwatch.diagnosis.finding import ACTIVATION_REMEDY_IDS

from .models import CNNConfig, MLPConfig, ModelConfig, RecurrentConfig

_INIT_REMEDIES = {
    "init_xavier": "xavier",
    "init_he": "he",
    "init_lecun": "lecun",
    "init_orthogonal": "orthogonal",
}

#: Default options per remedy, each with its reason.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    # max_norm 1.0: Pascanu et al. (2013) clip at a threshold near the typical norm; 1 is the
    # common default for small nets with unit-scale losses.
    "clip_norm": {"max_norm": 1.0},
    "clip_value": {"clip_value": 0.5},
    # AGC (Brock et al., 2021): lambda = 0.01 for large batches; small batches tolerate more.
    "clip_adaptive": {"clipping": 0.1, "eps": 1e-3},
    # depth None: a quarter of the layers, at least 2 (20 sigmoid layers -> 5).
    "reduce_depth": {"depth": None},
    # Greedy autoencoder pretraining (Bengio et al., 2007): a few hundred small steps per layer.
    "layerwise_pretraining": {"steps_per_layer": 100, "lr": 0.01, "batch_size": 64},
}


def options_for(remedy: str, given: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The remedy's defaults overridden by the config's ``remedy_options``; unknown keys fail."""
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


@torch.no_grad()
def lsuv_(model: nn.Module, x: torch.Tensor, tol: float = 0.05, max_iter: int = 10) -> nn.Module:
    """LSUV in place (Mishkin & Matas, 2016): orthogonal weights, then rescale each layer in
    forward order until its output has unit variance on the batch ``x``.

    Example:
        >>> from gradwatch.lab.models import MLP
        >>> net = lsuv_(MLP(MLPConfig(depth=3), 4, 2), torch.randn(64, 4))
    """
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for layer in layers:
        nn.init.orthogonal_(layer.weight)
        if layer.bias is not None:
            layer.bias.zero_()
    for layer in layers[:-1]:  # the head's output scale is the loss's business
        captured: list[torch.Tensor] = []

        def keep(
            _m: nn.Module, _i: Any, out: torch.Tensor, into: list[torch.Tensor] = captured
        ) -> None:
            into.append(out)

        handle = layer.register_forward_hook(keep)
        try:
            for _ in range(max_iter):
                captured.clear()
                model(x)
                std = float(captured[0].std())
                if not math.isfinite(std) or std == 0.0 or abs(std - 1.0) < tol:
                    break
                layer.weight.div_(std)
        finally:
            handle.remove()
    return model


def pretrain_layerwise_(
    model: nn.Sequential, x: torch.Tensor, generator: torch.Generator, **options: Any
) -> nn.Sequential:
    """Greedy layer-wise autoencoder pretraining in place (Bengio et al., 2007), MLPs only.

    Each hidden ``Linear -> [norm] -> act`` block in turn learns to reconstruct its own input
    (the frozen output of the blocks below) through a throwaway linear decoder; the head
    stays as initialised, for the supervised fine-tuning that follows.
    """
    opts = {**DEFAULT_OPTIONS["layerwise_pretraining"], **options}
    blocks: list[nn.Sequential] = []
    current: list[nn.Module] = []
    for module in list(model)[:-1]:  # all but the head
        current.append(module)
        if not isinstance(module, (nn.Linear, nn.BatchNorm1d, nn.LayerNorm)):
            blocks.append(nn.Sequential(*current))
            current = []
    h = x.detach()
    for block in blocks:
        linear = next(m for m in block.modules() if isinstance(m, nn.Linear))
        decoder = nn.Linear(linear.out_features, h.shape[1])
        params = [*block.parameters(), *decoder.parameters()]
        optimizer = torch.optim.Adam(params, lr=opts["lr"], foreach=True)
        for _ in range(opts["steps_per_layer"]):
            idx = torch.randint(0, len(h), (opts["batch_size"],), generator=generator)
            loss = ((decoder(block(h[idx])) - h[idx]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            block.eval()
            h = block(h)
            block.train()
    return model


def clipper(
    remedies: tuple[str, ...], options: Mapping[str, Mapping[str, Any]]
) -> Callable[[nn.Module], None] | None:
    """A function clipping a model's gradients in place as the clip remedies ask, or None.

    Example:
        >>> clipper(("relu",), {}) is None
        True
    """
    chosen = [(rid, options_for(rid, options)) for rid in remedies if rid.startswith("clip_")]
    if not chosen:
        return None

    def clip(model: nn.Module) -> None:
        for rid, opts in chosen:
            if rid == "clip_norm":
                torch.nn.utils.clip_grad_norm_(model.parameters(), opts["max_norm"])
            elif rid == "clip_value":
                torch.nn.utils.clip_grad_value_(model.parameters(), opts["clip_value"])
            else:
                _agc_(model, opts["clipping"], opts["eps"])

    return clip


@torch.no_grad()
def _agc_(model: nn.Module, clipping: float, eps: float) -> None:
    """Adaptive gradient clipping (Brock et al., 2021): per output unit, scale the gradient
    down to ``clipping * max(||w||, eps) / ||g||`` when it is larger."""
    for p in model.parameters():
        if p.grad is None:
            continue
        dims = tuple(range(1, p.ndim)) if p.ndim > 1 else ()
        w_norm = p.norm(dim=dims, keepdim=True) if dims else p.abs()
        g_norm = p.grad.norm(dim=dims, keepdim=True) if dims else p.grad.abs()
        max_norm = clipping * w_norm.clamp(min=eps)
        # torch.where rather than a Python branch: no host sync per parameter.
        scale = torch.where(g_norm > max_norm, max_norm / g_norm.clamp(min=1e-6), 1.0)
        p.grad.mul_(scale)
