"""``gradwatch demo``: see vanishing gradients in a deep sigmoid MLP on real data."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="train a deep sigmoid MLP on handwritten digits and show its vanishing gradients",
        description=(
            "Train a 20-layer sigmoid MLP on scikit-learn's bundled handwritten digits with "
            "gradwatch recording, then print the gradient RMS of every layer by depth."
        ),
    )
    p.add_argument(
        "--out", default="gradwatch-demo", help="directory for the run (default: %(default)s)"
    )
    p.add_argument(
        "--depth", type=int, default=20, help="number of Linear layers (default: %(default)s)"
    )
    p.add_argument("--steps", type=int, default=300, help="optimizer steps (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    import gradwatch as gw

    if args.depth < 2:
        raise ValueError(f"Expected `--depth` >= 2 but got {args.depth}.")
    torch.manual_seed(args.seed)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    layers: list[nn.Module] = [nn.Linear(64, 64), nn.Sigmoid()]
    for _ in range(args.depth - 2):
        layers += [nn.Linear(64, 64), nn.Sigmoid()]
    layers.append(nn.Linear(64, 10))
    model = nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    run_dir = Path(args.out) / "sigmoid-mlp"
    start = time.perf_counter()
    with gw.watch(model, opt, run_dir=run_dir, overwrite=True) as w:
        for _ in range(args.steps):
            idx = torch.randint(0, len(x), (64,), generator=gen)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    elapsed = time.perf_counter() - start
    trace = gw.load(run_dir)
    rms = np.nanmedian(trace.matrix("grad_rms"), axis=0)
    losses = trace.scalar("loss")
    print(
        f"Trained a {args.depth}-layer sigmoid MLP on digits for {args.steps} steps "
        f"in {elapsed:.1f} s; loss {losses[0]:.3f} -> {losses[-1]:.3f}."
    )
    print(f"Run recorded in {run_dir}/\n")
    print(f"{'depth':>5}  {'layer':>6}  {'median grad RMS':>16}  {'vs last layer':>13}")
    for info, value in zip(trace.layers, rms, strict=True):
        print(f"{info.depth:>5}  {info.name:>6}  {value:16.3e}  {value / rms[-1]:13.1e}")
    ratio = rms[0] / rms[-1]
    print(
        f"\nThe first layer receives {ratio:.1e} of the last layer's gradient: the sigmoid's "
        f"derivative is at most 0.25, and backpropagation multiplies one such factor per layer."
    )
    return 0
