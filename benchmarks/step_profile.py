"""Where the recorder's time goes at the defaults: the budget's cost breakdown and a profile.

Trains one workload of ``benchmarks/overhead.py`` with ``gw.watch(model, opt)`` (the 3%
budget) and prints the schedule's choice and the cost of each kind of step it measured
(``trace.config["schedule"]["cost_ms"]``), then ``cProfile``'s top functions of gradwatch by
own time over the last steps. On a GPU the profile shows host time only (what bounds a
launch-bound step).

Usage::

    python benchmarks/step_profile.py W2 --device cuda --steps 800
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
from pathlib import Path
from typing import Any

import torch

import gradwatch as gw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import WORKLOADS


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("workload", choices=list(WORKLOADS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--everything",
        action="store_true",
        help="sample every step (sample_every=1, no budget): a profile of sampled steps, and "
        "on a GPU the device time of the last three steps' kernels by operator",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, opt, loss_fn = WORKLOADS[args.workload].build(args.device, args.device != "cpu")
    profile = cProfile.Profile()
    options: dict[str, Any] = {"sample_every": 1, "overhead": None} if args.everything else {}
    kernels = None
    with gw.watch(model, opt, flush_every=100, on_finding=lambda finding: None, **options) as w:
        for step in range(args.steps):
            if step == args.steps // 2:
                profile.enable()
            if args.everything and args.device != "cpu" and step == args.steps - 3:
                profile.disable()
                kernels = torch.profiler.profile(
                    activities=[
                        torch.profiler.ProfilerActivity.CPU,
                        torch.profiler.ProfilerActivity.CUDA,
                    ]
                )
                kernels.__enter__()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model)
            loss.backward()
            opt.step()
            w.log(loss=loss)
        if kernels is not None:
            torch.cuda.synchronize()
            kernels.__exit__(None, None, None)
        profile.disable()
        meta = w._schedule.meta()
    print(f"{args.workload} on {args.device}, {args.steps} steps: {json.dumps(meta)}")
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats("gradwatch", 25)
    print(out.getvalue())
    if kernels is not None:
        table = kernels.key_averages().table(sort_by="self_cuda_time_total", row_limit=30)
        print("The last three steps' operators by device time:\n" + table)


if __name__ == "__main__":
    main()
