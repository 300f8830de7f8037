"""Step-time cost of gradwatch's GradientClipper vs torch's clip_grad_norm_.

Workload: a 50 x 256 tanh MLP (DESIGN.md's many-small-layers worst case), batch 64, SGD.
Prints the median over ``--repeats`` of the mean step time of each variant, and the ratio
to no clipping. Run: ``PYTHONPATH=src python benchmarks/clipping_overhead.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from gradwatch.remedies import GradientClipper


def _model() -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(50):
        layers += [nn.Linear(256, 256), nn.Tanh()]
    return nn.Sequential(*layers)


def _time(variant: str, steps: int) -> float:
    torch.manual_seed(0)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    clip: Callable[[], object] = lambda: None  # noqa: E731
    if variant == "torch clip_grad_norm_":
        clip = lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # noqa: E731
    clipper = None
    if variant.startswith("GradientClipper"):
        mode = variant.split("(")[1].rstrip(")")
        kw = {"norm": {"max_norm": 1.0}, "value": {"clip_value": 0.01}, "adaptive": {}}[mode]
        clipper = GradientClipper(model, mode=mode, **kw).attach(opt)  # type: ignore[arg-type]
    x = torch.randn(64, 256)
    t0 = 0.0
    for i in range(steps + 5):
        if i == 5:
            t0 = time.perf_counter()
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        clip()
        opt.step()
    dt = (time.perf_counter() - t0) / steps
    if clipper is not None:
        clipper.remove()
    return dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = [
        "none",
        "torch clip_grad_norm_",
        "GradientClipper(norm)",
        "GradientClipper(value)",
        "GradientClipper(adaptive)",
    ]
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):  # interleaved, so machine load hits every variant alike
        for v in variants:
            times[v].append(_time(v, args.steps))
    base = statistics.median(times["none"])
    for v in variants:
        med = statistics.median(times[v])
        print(f"{v:28s} {med * 1e3:7.2f} ms/step  x{med / base:.3f}")


if __name__ == "__main__":
    main()
