"""What sharing one hook between a layer and its activation saves, side by side in one process.

Trains copies of one workload of ``benchmarks/overhead.py`` with everything every step
(``sample_every=1, overhead=None``), taking turns step by step: an unwatched copy, a second
unwatched copy (the A/A row: this run's noise), a watched copy with fused hooks (the default)
and a watched copy whose fusion is turned off (each layer and each activation module keeps
its own hook, as before this change). Prints the median step, its ratio to the unwatched
copy, and the median of the per-step difference separate - fused. Also counts the Python
hook calls of one sampled step of each watched copy (``sampled_step.CountHooks``).

Usage::

    python benchmarks/hook_fusion.py                   # W1 on CPU, 200 steps each
    python benchmarks/hook_fusion.py --workloads W1 W4 GPT2 --steps 60
    python benchmarks/hook_fusion.py --device cuda --steps 400
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import gradwatch as gw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import WORKLOADS
from sampled_step import CountHooks, sync

COPIES = ("none", "none, 2nd copy (A/A)", "fused", "separate")


def run(name: str, device: str, steps: int, warmup: int) -> None:
    copies: dict[str, Any] = {}
    for key in COPIES:
        torch.manual_seed(0)
        model, opt, loss_fn = WORKLOADS[name].build(device, device != "cpu")
        watch = None
        if key in ("fused", "separate"):
            watch = gw.watch(
                model, opt, sample_every=1, overhead=None, on_finding=lambda finding: None
            )
            if key == "separate":
                # The plan is built at the first step after the ordering one: no pair fused.
                watch._sampler._fusable = dict  # type: ignore[method-assign]
        copies[key] = (model, opt, loss_fn, watch)

    def step(key: str) -> None:
        model, opt, loss_fn, _ = copies[key]
        opt.zero_grad(set_to_none=True)
        loss_fn(model).backward()
        opt.step()

    try:
        for _ in range(warmup):
            for key in COPIES:
                step(key)
        hooks = {}
        for key in ("fused", "separate"):
            with CountHooks() as count:
                step(key)
            hooks[key] = count.forward + count.tensor
        times: dict[str, list[float]] = {key: [] for key in COPIES}
        for i in range(steps):
            order = COPIES if i % 2 == 0 else COPIES[::-1]
            for key in order:
                sync(device)
                start = time.perf_counter()
                step(key)
                sync(device)
                times[key].append(time.perf_counter() - start)
    finally:
        for _, _, _, watch in copies.values():
            if watch is not None:
                watch.close()
    bare = statistics.median(times["none"])
    print(f"{name} on {device}, {steps} steps per copy, everything every step")
    for key in COPIES:
        median = statistics.median(times[key])
        calls = f"  hook calls per step {hooks[key]}" if key in hooks else ""
        print(f"  {key:22s} {median * 1e3:9.2f} ms  ratio {median / bare:.3f}{calls}")
    paired = [s - f for s, f in zip(times["separate"], times["fused"], strict=True)]
    print(
        f"  separate - fused: median of per-step differences {statistics.median(paired) * 1e3:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["W1"], choices=list(WORKLOADS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.workloads:
        run(name, args.device, args.steps, args.warmup)


if __name__ == "__main__":
    main()
