"""Step-time overhead of recording, measured side by side in one process.

Each workload trains a model; every configuration (no recording, gradwatch at several
settings, the naive per-parameter ``p.grad.norm().item()`` loop other tools use) runs
interleaved A B C A B C ... for several rounds so that machine noise hits all alike. The
table reports, per workload and configuration, the median step time and the median of the
per-round ratios to "none" with the spread (min-max over rounds).

Usage::

    python benchmarks/overhead.py                 # all workloads, 2 threads
    python benchmarks/overhead.py --workloads W1 --rounds 5 --steps 20
    python benchmarks/overhead.py --markdown docs/performance.md  # also write the table
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import gradwatch as gw


@dataclass
class Workload:
    name: str
    description: str
    build: Callable[[], tuple[nn.Module, torch.optim.Optimizer, Callable[[], torch.Tensor]]]
    steps: int  # timed steps per round: ~1-2 s of work on a 2-core CPU


def _mlp(depth: int, width: int, act: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers[:-1])


def w1() -> tuple[nn.Module, torch.optim.Optimizer, Callable[[], torch.Tensor]]:
    model = _mlp(50, 256, nn.Tanh)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.randn(128, 256), torch.randn(128, 256)
    return model, opt, lambda: (model(x) - y).pow(2).mean()


def w2() -> tuple[nn.Module, torch.optim.Optimizer, Callable[[], torch.Tensor]]:
    model = _mlp(8, 2048, nn.ReLU)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.randn(256, 2048), torch.randn(256, 2048)
    return model, opt, lambda: (model(x) - y).pow(2).mean()


class _LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(32, 256, num_layers=2, batch_first=True)
        self.head = nn.Linear(256, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # (B, T, H)
        return self.head(out[:, -1])


def w3() -> tuple[nn.Module, torch.optim.Optimizer, Callable[[], torch.Tensor]]:
    model = _LSTMNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(32, 100, 32), torch.randn(32, 1)
    return model, opt, lambda: (model(x) - y).pow(2).mean()


def w4() -> tuple[nn.Module, torch.optim.Optimizer, Callable[[], torch.Tensor]]:
    layer = nn.TransformerEncoderLayer(256, 4, dim_feedforward=1024, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(16, 128, 256)
    return model, opt, lambda: model(x).pow(2).mean()


WORKLOADS = {
    "W1": Workload("W1", "50-layer width-256 tanh MLP, batch 128, SGD", w1, 20),
    "W2": Workload("W2", "8-layer width-2048 ReLU MLP, batch 256, Adam", w2, 4),
    "W3": Workload("W3", "2-layer LSTM hidden 256, seq 100, batch 32, Adam", w3, 10),
    "W4": Workload("W4", "6-layer TransformerEncoder d256 h4, seq 128, batch 16, Adam", w4, 5),
}

# name -> watch() keyword arguments (None = no gradwatch)
CONFIGS: dict[str, dict[str, object] | None] = {
    "none": None,
    "naive .item() loop": None,
    "grads every step": {"every": 1, "sample_every": 10**9, "activations": False},
    "all, sample_every=10": {"every": 1, "sample_every": 10},
    "all, every step": {"every": 1, "sample_every": 1},
}


def _naive_norms(model: nn.Module) -> list[float]:
    # What many tools do: one host sync per parameter.
    return [p.grad.norm().item() for p in model.parameters() if p.grad is not None]


def time_config(workload: Workload, config: str, steps: int, state: dict[str, object]) -> float:
    model, opt, loss_fn = state["model"], state["opt"], state["loss_fn"]  # type: ignore[misc]
    assert isinstance(model, nn.Module) and isinstance(opt, torch.optim.Optimizer)
    kwargs = CONFIGS[config]
    w = gw.watch(model, opt, flush_every=100, **kwargs) if kwargs is not None else None  # type: ignore[arg-type]
    try:

        def one_step() -> None:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn()  # type: ignore[operator]
            loss.backward()
            if config == "naive .item() loop":
                _naive_norms(model)
            opt.step()
            if w is not None:
                w.log(loss=loss)

        for _ in range(2):  # warm-up, and the sampled step 0 of a fresh watch
            one_step()
        start = time.perf_counter()
        for _ in range(steps):
            one_step()
        return (time.perf_counter() - start) / steps
    finally:
        if w is not None:
            w.close()


def run(workloads: list[str], rounds: int, steps: int | None) -> list[dict[str, object]]:
    rows = []
    for key in workloads:
        wl = WORKLOADS[key]
        torch.manual_seed(0)
        model, opt, loss_fn = wl.build()
        state = {"model": model, "opt": opt, "loss_fn": loss_fn}
        times: dict[str, list[float]] = {c: [] for c in CONFIGS}
        for r in range(rounds):
            order = list(CONFIGS) if r % 2 == 0 else list(reversed(CONFIGS))
            for config in order:
                times[config].append(time_config(wl, config, steps or wl.steps, state))
        for config in CONFIGS:
            ratios = [t / b for t, b in zip(times[config], times["none"], strict=True)]
            rows.append(
                {
                    "workload": key,
                    "config": config,
                    "step_ms": 1000 * statistics.median(times[config]),
                    "ratio": statistics.median(ratios),
                    "lo": min(ratios),
                    "hi": max(ratios),
                }
            )
            print(
                f"{key}  {config:22s} {rows[-1]['step_ms']:9.2f} ms  ratio {rows[-1]['ratio']:.3f}"
                f"  [{rows[-1]['lo']:.3f}, {rows[-1]['hi']:.3f}]",
                flush=True,
            )
    return rows


def markdown(rows: list[dict[str, object]], threads: int, rounds: int) -> str:
    lines = [
        f"Measured {dt.date.today().isoformat()} on {platform.machine()} "
        f"({os.cpu_count()} cores), torch {torch.__version__}, {threads} threads, "
        f"{rounds} interleaved rounds per configuration.",
        "",
        "| workload | configuration | median step (ms) | ratio to none (median) | spread (min-max) |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['config']} | {r['step_ms']:.2f} | {r['ratio']:.3f} | "
            f"{r['lo']:.3f}-{r['hi']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per round (default: per workload)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", help="print the markdown table to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for key in args.workloads:
        print(f"{key}: {WORKLOADS[key].description}")
    rows = run(args.workloads, args.rounds, args.steps)
    table = markdown(rows, args.threads, args.rounds)
    print()
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")


if __name__ == "__main__":
    main()
