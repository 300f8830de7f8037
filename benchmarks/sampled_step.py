"""What one sampled step of recording costs: aten ops (kernel launches) and CPU time.

Counts the aten operators a training step dispatches (``TorchDispatchMode``), with and without
``gw.watch``, on a sampled step and on a plain one: the difference is the recorder's ops (on a
GPU, each is at least one kernel launch). Times the recorder's part of a sampled step as the
median of (watched step - unwatched step) over interleaved steps.

Usage::

    python benchmarks/sampled_step.py               # W1 (50-layer tanh MLP) on CPU
    python benchmarks/sampled_step.py --steps 200 --threads 2  # longer, steadier timing
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import gradwatch as gw


class CountOps(TorchDispatchMode):
    """Counts every aten operator dispatched while active, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


def _model() -> tuple[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(50):
        layers += [nn.Linear(256, 256), nn.Tanh()]
    model = nn.Sequential(*layers[:-1])
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    return model, opt, torch.randn(128, 256), torch.randn(128, 256)


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    (model(x) - y).pow(2).mean().backward()
    opt.step()


def count(sample_every: int) -> Counter[str]:
    """aten ops of one step at index 30 (sampled when 30 % sample_every == 0), watched."""
    model, opt, x, y = _model()
    with gw.watch(model, opt, sample_every=sample_every, dense_steps=0, overhead=None):
        for _ in range(30):
            _step(model, opt, x, y)
        with CountOps() as mode:
            _step(model, opt, x, y)
    return mode.ops


def baseline() -> Counter[str]:
    model, opt, x, y = _model()
    for _ in range(3):
        _step(model, opt, x, y)
    with CountOps() as mode:
        _step(model, opt, x, y)
    return mode.ops


def timing(steps: int) -> tuple[float, float]:
    """Median ms of the recorder's part of a sampled and of a plain step (watched - bare)."""
    (
        bare,
        w_model,
    ) = _model(), _model()
    watched = gw.watch(w_model[0], w_model[1], sample_every=2, dense_steps=0, overhead=None)
    sampled, plain = [], []
    try:
        for i in range(steps + 4):
            t0 = time.perf_counter()
            _step(*bare)
            t1 = time.perf_counter()
            _step(*w_model)  # step i of the watch: sampled when i is even
            t2 = time.perf_counter()
            if i >= 4:
                (sampled if i % 2 == 0 else plain).append((t2 - t1) - (t1 - t0))
    finally:
        watched.close()
    return 1000 * statistics.median(sampled), 1000 * statistics.median(plain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = baseline()
    sampled = count(1)
    plain = count(1000)
    extra_s = sampled - base
    extra_p = plain - base
    print(f"aten ops per step, W1: unwatched {sum(base.values())}")
    print(f"  recorder, sampled step: {sum(extra_s.values())}  plain step: {sum(extra_p.values())}")
    print("  sampled step's ops:", ", ".join(f"{k} {v}" for k, v in extra_s.most_common()))
    s_ms, p_ms = timing(args.steps)
    print(
        f"recorder time per step (median watched - bare): sampled {s_ms:.2f} ms, plain {p_ms:.2f} ms"
    )


if __name__ == "__main__":
    main()
