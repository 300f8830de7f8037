"""Hand-built traces for rule tests: closed-form profiles along depth and over steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradwatch.trace import LayerInfo, Trace


def layers(n: int, *, activation: str | None = "ReLU", width: int = 16) -> list[LayerInfo]:
    """``n`` Linear layers of ``width`` units, each followed by ``activation``."""
    return [
        LayerInfo(
            name=f"fc{i}",
            type="Linear",
            depth=i,
            num_params=width * width + width,
            shapes={"weight": [width, width], "bias": [width]},
            activation=activation,
        )
        for i in range(n)
    ]


def depth_profile(n_layers: int, decades: float, base: float = 1e-3) -> np.ndarray:
    """Values rising log-linearly by ``decades`` from the first layer to the last."""
    return base * 10.0 ** (decades * np.arange(n_layers) / max(n_layers - 1, 1))


def trace_of(
    n_layers: int,
    n_steps: int,
    metrics: Mapping[str, np.ndarray],
    *,
    scalars: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    recurrent: Mapping[str, tuple[Sequence[int], np.ndarray]] | None = None,
    layer_infos: list[LayerInfo] | None = None,
    activation: str | None = "ReLU",
) -> Trace:
    """A trace with one row per step; 1-D metric values are broadcast to every step."""
    mats: dict[str, Any] = {}
    for k, v in metrics.items():
        arr = np.asarray(v, dtype=np.float64)
        mats[k] = np.broadcast_to(arr, (n_steps, n_layers)).copy() if arr.ndim == 1 else arr
    return Trace.from_arrays(
        layer_infos if layer_infos is not None else layers(n_layers, activation=activation),
        np.arange(n_steps),
        mats,
        scalars=scalars,
        recurrent=recurrent,
    )


def four_class_loop() -> tuple[Any, Any, Any, Any]:
    """(model, x, y, generator) of the small real loops the loop-mistake tests train: a
    16-32-32-4 ReLU MLP at seed 0, 512 inputs of 16 features and their 4 classes (the signs
    of two sums), and a generator at seed 0 to draw batches with."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)
    )
    x = torch.randn(512, 16)
    y = (x[:, :2].sum(1) > 0).long() + 2 * (x[:, 2] > 0).long()
    return model, x, y, torch.Generator().manual_seed(0)


def train_classifier(
    model: Any,
    opt: Any,
    x: Any,
    y: Any,
    steps: int,
    *,
    gen: Any,
    clip: float | None = None,
    schedule: Any = None,
) -> tuple[Trace, list[float]]:
    """Train ``model`` ``steps`` steps of cross-entropy on batches of 64 of ``(x, y)`` drawn
    with ``gen``, watched (``overhead=None``, the live check quiet), in the right order:
    ``zero_grad``, ``backward``, ``clip_grad_norm_(clip)`` where given, ``step``,
    ``schedule.step()`` where given, ``log``. The trace and each step's loss."""
    import torch
    import torch.nn.functional as F

    import gradwatch as gw

    losses = []
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(steps):
            i = torch.randint(0, len(x), (64,), generator=gen)
            loss = F.cross_entropy(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            if schedule is not None:
                schedule.step()
            w.log(loss=loss)
            losses.append(loss.item())
    return w.trace, losses
