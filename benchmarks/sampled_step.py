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

``--device meta`` counts the operators of the recorder's accelerator path without a GPU:
the model on PyTorch's meta device (shapes, no values) takes the recorder's non-CPU branches
(``_foreach`` norms, no BLAS ``dot``), and the operators that are not views are the kernels
it would launch (a ``_foreach_norm`` is two on CUDA). Measured against an H200 at two
commits, those counts matched ``--device cuda``'s operator counts exactly.

Usage::

    python benchmarks/sampled_step.py               # W1 (50-layer tanh MLP) on CPU
    python benchmarks/sampled_step.py --steps 200 --threads 2  # longer, steadier timing
    python benchmarks/sampled_step.py --width 16   # host-bound, as W1 is on a GPU
    python benchmarks/sampled_step.py --device cuda --json out.json
    python benchmarks/sampled_step.py --device meta  # the accelerator path's ops, no GPU
    python benchmarks/sampled_step.py --device meta --workload RESNET50 --gpu-batch
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import gradwatch as gw

Setup = tuple[nn.Module, torch.optim.Optimizer, Callable[[nn.Module], torch.Tensor]]

# Operators that make a view or an alias: no kernel on any device, only host time.
VIEW_OPS = frozenset(
    {
        "alias",
        "as_strided",
        "detach",
        "expand",
        "permute",
        "reshape",
        "select",
        "slice",
        "squeeze",
        "t",
        "transpose",
        "unsqueeze",
        "view",
        "_reshape_alias",
        "_unsafe_view",
    }
)


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


def _model(device: str, width: int, workload: str | None = None, big: bool = False) -> Setup:
    torch.manual_seed(0)
    if workload is not None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from overhead import WORKLOADS

        return WORKLOADS[workload].build(device, big)
    layers: list[nn.Module] = []
    for _ in range(50):
        layers += [nn.Linear(width, width), nn.Tanh()]
    model = nn.Sequential(*layers[:-1]).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.randn(128, width, device=device), torch.randn(128, width, device=device)
    return model, opt, lambda m: (m(x) - y).pow(2).mean()


def _step(
    model: nn.Module, opt: torch.optim.Optimizer, loss: Callable[[nn.Module], torch.Tensor]
) -> None:
    opt.zero_grad(set_to_none=True)
    loss(model).backward()
    opt.step()


@contextmanager
def on_meta(device: str) -> Iterator[None]:
    """Let ``gw.watch`` take a model on the meta device (``--device meta``).

    The recorder refuses such a model (it holds no values to record) and the autocast
    state of the meta device cannot be read; for counting the operators of its accelerator
    path, which only needs shapes, both checks are lifted while this is active.
    """
    if device != "meta":
        yield
        return
    import importlib

    watch_module = importlib.import_module("gradwatch.recording.watch")
    check, autocast = watch_module.check_model, torch.is_autocast_enabled

    def is_autocast_enabled(*args: Any) -> bool:
        return False if args and args[0] == "meta" else autocast(*args)

    watch_module.check_model = lambda model: model
    torch.is_autocast_enabled = is_autocast_enabled  # type: ignore[assignment]
    try:
        yield
    finally:
        watch_module.check_model = check
        torch.is_autocast_enabled = autocast  # type: ignore[assignment]


def sync(device: str) -> None:
    if device not in ("cpu", "meta"):
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
    device: str,
    width: int,
    sample_every: int | None,
    workload: str | None = None,
    big: bool = False,
) -> tuple[Counter[str], int | None, CountHooks]:
    """aten ops (and CUDA kernels) and hook calls of one step at index 30, watched (sampled
    when 30 % sample_every == 0), or unwatched when ``sample_every`` is None."""
    setup = _model(device, width, workload, big)
    watch = None
    with on_meta(device):
        if sample_every is not None:
            watch = gw.watch(
                setup[0], setup[1], sample_every=sample_every, dense_steps=0, overhead=None
            )
        try:
            for _ in range(30):
                _step(*setup)
            if device == "cuda":
                # Two steps alike: the kernels of one, the ops of the next (the dispatch mode
                # would also be profiled). Steps 30 and 31 are both sampled (sample_every=1)
                # or both plain (1000).
                kernels: int | None = _kernels(setup)
            else:
                kernels = None
            sync(device)
            with CountOps() as mode, CountHooks() as hooks:
                _step(*setup)
            sync(device)
        finally:
            if watch is not None:
                # close() removes the hooks before its final flush, which cannot copy meta
                # tensors to the host.
                with contextlib.suppress(NotImplementedError):
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
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, or meta (the accelerator path's operators counted without a GPU: "
        "no kernels, no timing)",
    )
    parser.add_argument("--json", help="also write the counts and times to this file")
    parser.add_argument("--width", type=int, default=WIDTH, help="layer width (W1: 256)")
    parser.add_argument(
        "--workload",
        help="a workload of benchmarks/overhead.py (RESNET50, GPT2, ...) instead of W1 "
        "(operators and hook calls only)",
    )
    parser.add_argument(
        "--gpu-batch",
        action="store_true",
        help="the workload's GPU-size batch (with --device meta: no memory is needed)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, width, workload = args.device, args.width, args.workload
    big = args.gpu_batch
    base, base_k, _ = measure(device, width, None, workload, big)
    sampled, sampled_k, sampled_h = measure(device, width, 1, workload, big)
    plain, plain_k, plain_h = measure(device, width, 1000, workload, big)
    extra_s = sampled - base
    extra_p = plain - base
    kernels_s = sum(v for k, v in extra_s.items() if k not in VIEW_OPS)
    kernels_p = sum(v for k, v in extra_p.items() if k not in VIEW_OPS)
    name = (workload or f"W1 (width {width})") + (", GPU-size batch" if big else "")
    print(f"{name} on {device}, torch {torch.__version__}")
    print(f"aten ops per step: unwatched {sum(base.values())}")
    print(f"  recorder, sampled step: {sum(extra_s.values())}  plain step: {sum(extra_p.values())}")
    print(f"  of which not views (each a kernel or more): sampled {kernels_s}, plain {kernels_p}")
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
    timed = device != "meta" and workload is None
    if timed:
        bare_ms, s_ms, p_ms = timing(device, width, args.steps)
        print(
            f"bare step {bare_ms:.2f} ms; recorder time per step (median watched - bare): "
            f"sampled {s_ms:.2f} ms, plain {p_ms:.2f} ms"
        )
    if args.json:
        result = {
            "device": device,
            "workload": name,
            "width": width,
            "torch": torch.__version__,
            "ops": {
                "unwatched": sum(base.values()),
                "sampled": sum(extra_s.values()),
                "plain": sum(extra_p.values()),
                "sampled_not_views": kernels_s,
                "plain_not_views": kernels_p,
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
            "ms": {"bare": bare_ms, "sampled": s_ms, "plain": p_ms} if timed else None,
        }
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
