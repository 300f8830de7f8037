"""Faster hardware: move training to the fastest device available and measure the gain.

A faster device does not change the gradients; it makes each step cheaper, so more steps
(or a larger model made trainable by the other remedies) fit into the same time. The gain
is measured on the user's own step function, never assumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["HardwareReport", "fastest_device", "measure_speedup", "move_to_device_"]


def fastest_device() -> torch.device:
    """CUDA if available, else Apple MPS, else CPU.

    Example:
        >>> fastest_device().type in ("cuda", "mps", "cpu")
        True
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def move_to_device_(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    device: torch.device | str | None = None,
) -> torch.device:
    """Move ``model`` (in place) and its optimizer's state to ``device`` (default: fastest).

    Optimizer state tensors follow the parameters, except the scalar ``step`` counters,
    which torch keeps on the CPU unless the optimizer is ``capturable``/``fused``.

    Example:
        >>> m = nn.Linear(2, 2)
        >>> move_to_device_(m, device="cpu").type
        'cpu'
    """
    dev = torch.device(device) if device is not None else fastest_device()
    old_params = list(model.parameters())
    model.to(dev)
    if optimizer is not None:
        # Module.to keeps the Parameter objects when it can swap their data in place (CPU
        # <-> CUDA) but makes new ones otherwise; the optimizer must follow either way.
        new_of = {id(o): n for o, n in zip(old_params, model.parameters(), strict=True)}
        for group in optimizer.param_groups:
            group["params"] = [new_of.get(id(p), p) for p in group["params"]]
        for old in old_params:
            new_p = new_of[id(old)]
            if new_p is not old and old in optimizer.state:
                optimizer.state[new_p] = optimizer.state.pop(old)
        for group in optimizer.param_groups:
            keep_step_on_cpu = not (group.get("capturable") or group.get("fused"))
            for p in group["params"]:
                state = optimizer.state.get(p, {})
                for key, value in state.items():
                    if isinstance(value, torch.Tensor):
                        if key == "step" and keep_step_on_cpu:
                            continue
                        state[key] = value.to(dev)
    return dev


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _time_steps(
    step_fn: Callable[[torch.device], Any], device: torch.device, steps: int, warmup: int
) -> float:
    for _ in range(warmup):
        step_fn(device)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step_fn(device)
    _sync(device)
    return (time.perf_counter() - t0) / steps


@dataclass(frozen=True)
class HardwareReport:
    """What :func:`measure_speedup` did and measured.

    Attributes:
        device_before: Where the model was.
        device_after: Where it is now (the same when nothing was moved).
        moved: Whether the model (and optimizer state) moved.
        step_s_before: Mean seconds per step before (NaN if not measured).
        step_s_after: Mean seconds per step after (NaN if not measured).
        speedup: ``step_s_before / step_s_after`` (1.0 when nothing moved).
        message: One plain sentence.
    """

    device_before: str
    device_after: str
    moved: bool
    step_s_before: float
    step_s_after: float
    speedup: float
    message: str


def measure_speedup(
    model: nn.Module,
    step_fn: Callable[[torch.device], Any],
    optimizer: torch.optim.Optimizer | None = None,
    *,
    steps: int = 10,
    warmup: int = 3,
    device: torch.device | str | None = None,
) -> HardwareReport:
    """Time ``step_fn`` where the model is, move model and optimizer to the fastest device
    (in place), time it again, and report the measured speed-up.

    ``step_fn(device)`` must run one training step of ``model`` with its batch on
    ``device``. On a machine without CUDA or MPS nothing is moved or timed: the report says
    there is no accelerator and the speed-up is 1.0. Note that the steps run here train the
    model (``warmup + steps`` steps on each device).

    Example:
        >>> m = nn.Linear(4, 1)
        >>> def step(dev):
        ...     m(torch.randn(8, 4, device=dev)).sum().backward()
        >>> r = measure_speedup(m, step, device="cpu", steps=1, warmup=0)
        >>> r.moved, r.speedup
        (False, 1.0)
    """
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"expected `steps` to be an int >= 1 but got {steps!r}")
    if not (isinstance(warmup, int) and warmup >= 0):
        raise ValueError(f"expected `warmup` to be an int >= 0 but got {warmup!r}")
    before = _model_device(model)
    target = torch.device(device) if device is not None else fastest_device()
    if target.type == before.type:
        why = (
            "no accelerator (CUDA or MPS) is available on this machine"
            if target.type == "cpu"
            else f"the model is already on the fastest device ({target})"
        )
        return HardwareReport(
            str(before),
            str(before),
            False,
            float("nan"),
            float("nan"),
            1.0,
            f"{why}: nothing moved, speed-up 1.0",
        )
    t_before = _time_steps(step_fn, before, steps, warmup)
    move_to_device_(model, optimizer, target)
    t_after = _time_steps(step_fn, target, steps, warmup)
    speedup = t_before / t_after
    return HardwareReport(
        str(before),
        str(target),
        True,
        t_before,
        t_after,
        speedup,
        f"moved from {before} to {target}: {t_before * 1e3:.2f} ms -> {t_after * 1e3:.2f} ms "
        f"per step, x{speedup:.2f} (mean of {steps} steps after {warmup} warm-up steps)",
    )
