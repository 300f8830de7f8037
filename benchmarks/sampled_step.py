"""What one sampled step of recording costs: aten ops, hook calls, kernel launches and time.

Counts the aten operators a training step dispatches (``TorchDispatchMode``), with and without
``gw.watch``, on a sampled step and on a plain one: the difference is the recorder's ops. It
also counts the Python hook calls of the step (module forward and pre-hooks, by a global
forward pre-hook that reads each called module's hooks, and tensor hooks registered), each a
few microseconds of host time, the part of a sampled step that only fewer hooks cut. On a
CUDA device it also counts the kernels the step launches (``torch.profiler``), the number that
bounds a small model's step on a GPU. Times the recorder's part of a sampled and of a plain
step as the median of (watched step - unwatched step) over interleaved steps (synchronised
with the device on a GPU).

Usage::

    python benchmarks/sampled_step.py               # W1 (50-layer tanh MLP) on CPU
    python benchmarks/sampled_step.py --steps 200 --threads 2  # longer, steadier timing
    python benchmarks/sampled_step.py --width 16   # host-bound, as W1 is on a GPU
    python benchmarks/sampled_step.py --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import gradwatch as gw

Setup = tuple[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor]


class CountOps(TorchDispatchMode):
    """Counts every aten operator dispatched while active, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


class CountHooks:
    """Counts the module forward (and pre-) hooks run and the tensor hooks registered while
    active: each registered tensor hook runs once in the backward pass."""

    def __init__(self) -> None:
        self.forward = 0
        self.tensor = 0

    def __enter__(self) -> CountHooks:
        def on_call(module: nn.Module, args: Any) -> None:
            self.forward += len(module._forward_hooks) + len(module._forward_pre_hooks)

        original = torch.Tensor.register_hook

        def register_hook(tensor: torch.Tensor, hook: Any) -> Any:
            self.tensor += 1
            return original(tensor, hook)

        self._original = original
        self._handle = torch.nn.modules.module.register_module_forward_pre_hook(on_call)
        torch.Tensor.register_hook = register_hook  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()
        torch.Tensor.register_hook = self._original  # type: ignore[method-assign]


WIDTH = 256  # W1's; --width 16 makes the step host-bound on CPU, as W1 is on a GPU


def _model(device: str, width: int) -> Setup:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(50):
        layers += [nn.Linear(width, width), nn.Tanh()]
    model = nn.Sequential(*layers[:-1]).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.randn(128, width, device=device), torch.randn(128, width, device=device)
    return model, opt, x, y


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    (model(x) - y).pow(2).mean().backward()
    opt.step()


def sync(device: str) -> None:
    if device != "cpu":
        torch.cuda.synchronize()


def _kernels(setup: Setup) -> int:
    """CUDA kernels (and memcpy/memset) one step launches, from the profiler's device events."""
    from torch.profiler import ProfilerActivity, profile

    sync("cuda")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        _step(*setup)
        sync("cuda")
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def measure(
    device: str, width: int, sample_every: int | None
) -> tuple[Counter[str], int | None, CountHooks]:
    """aten ops (and CUDA kernels) and hook calls of one step at index 30, watched (sampled
    when 30 % sample_every == 0), or unwatched when ``sample_every`` is None."""
    setup = _model(device, width)
    watch = (
        gw.watch(setup[0], setup[1], sample_every=sample_every, dense_steps=0, overhead=None)
        if sample_every is not None
        else None
    )
    try:
        for _ in range(30):
            _step(*setup)
        if device != "cpu":
            # The same step twice: its kernels once, its ops once (the dispatch mode would
            # also be profiled). Step 30 and step 30 + sample_every are alike.
            kernels = _kernels(setup)
            for _ in range((sample_every or 1) - 1):
                _step(*setup)
        else:
            kernels = None
        sync(device)
        with CountOps() as mode, CountHooks() as hooks:
            _step(*setup)
        sync(device)
    finally:
        if watch is not None:
            watch.close()
    return mode.ops, kernels, hooks


def timing(device: str, width: int, steps: int) -> tuple[float, float, float]:
    """Median ms of a bare step, and of the recorder's part of a sampled and of a plain step
    (watched - bare), from interleaved steps."""
    bare, w_model = _model(device, width), _model(device, width)
    watched = gw.watch(w_model[0], w_model[1], sample_every=2, dense_steps=0, overhead=None)
    base: list[float] = []
    sampled: list[float] = []
    plain: list[float] = []
    try:
        for i in range(steps + 4):
            sync(device)
            t0 = time.perf_counter()
            _step(*bare)
            sync(device)
            t1 = time.perf_counter()
            _step(*w_model)  # step i of the watch: sampled when i is even
            sync(device)
            t2 = time.perf_counter()
            if i >= 4:
                base.append(t1 - t0)
                (sampled if i % 2 == 0 else plain).append((t2 - t1) - (t1 - t0))
    finally:
        watched.close()
    return (
        1000 * statistics.median(base),
        1000 * statistics.median(sampled),
        1000 * statistics.median(plain),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", help="also write the counts and times to this file")
    parser.add_argument("--width", type=int, default=WIDTH, help="layer width (W1: 256)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    width = args.width
    base, base_k, _ = measure(device, width, None)
    sampled, sampled_k, sampled_h = measure(device, width, 1)
    plain, plain_k, plain_h = measure(device, width, 1000)
    extra_s = sampled - base
    extra_p = plain - base
    print(f"W1 (width {width}) on {device}, torch {torch.__version__}")
    print(f"aten ops per step: unwatched {sum(base.values())}")
    print(f"  recorder, sampled step: {sum(extra_s.values())}  plain step: {sum(extra_p.values())}")
    print("  sampled step's ops:", ", ".join(f"{k} {v}" for k, v in extra_s.most_common()))
    print(
        f"Python hook calls per step: sampled {sampled_h.forward + sampled_h.tensor} "
        f"({sampled_h.forward} module, {sampled_h.tensor} tensor), "
        f"plain {plain_h.forward + plain_h.tensor}"
    )
    if base_k is not None and sampled_k is not None and plain_k is not None:
        print(
            f"CUDA kernels per step: unwatched {base_k}; recorder, sampled step "
            f"{sampled_k - base_k}, plain step {plain_k - base_k}"
        )
    bare_ms, s_ms, p_ms = timing(device, width, args.steps)
    print(
        f"bare step {bare_ms:.2f} ms; recorder time per step (median watched - bare): "
        f"sampled {s_ms:.2f} ms, plain {p_ms:.2f} ms"
    )
    if args.json:
        result = {
            "device": device,
            "width": width,
            "torch": torch.__version__,
            "ops": {
                "unwatched": sum(base.values()),
                "sampled": sum(extra_s.values()),
                "plain": sum(extra_p.values()),
                "sampled_by_op": dict(extra_s.most_common()),
            },
            "hook_calls": {
                "sampled_module": sampled_h.forward,
                "sampled_tensor": sampled_h.tensor,
                "plain": plain_h.forward + plain_h.tensor,
            },
            "kernels": None
            if base_k is None
            else {"unwatched": base_k, "sampled": sampled_k - base_k, "plain": plain_k - base_k},  # type: ignore[operator]
            "ms": {"bare": bare_ms, "sampled": s_ms, "plain": p_ms},
        }
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
