"""Step-time overhead of recording, measured side by side in one process.

Each workload trains one copy of its model per configuration (no recording, gradwatch at
several settings, the naive per-parameter ``p.grad.norm().item()`` loop other tools use), all
built from the same seed. The copies take turns, a block of ``--block`` steps each (one whole
sampling cycle: 10 steps), A B C D E then E D C B A, for several rounds, so that the slow
phases of a shared machine hit every configuration alike. The table reports, per workload and
configuration, the median step time, the median of the per-round ratios to "none" with their
spread (min-max over rounds), and the ratio of total times.

Usage::

    python benchmarks/overhead.py                 # all workloads, 2 threads
    python benchmarks/overhead.py --workloads W1 --rounds 30
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
    build: Callable[[str], tuple[nn.Module, torch.optim.Optimizer, Callable[[], torch.Tensor]]]
    rounds: int  # default rounds: ~1-4 minutes per workload on a 2-core CPU


def _mlp(depth: int, width: int, act: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers[:-1])


def w1(device: str) -> tuple[nn.Module, torch.optim.Optimizer, Callable[[], torch.Tensor]]:
    model = _mlp(50, 256, nn.Tanh).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.randn(128, 256, device=device), torch.randn(128, 256, device=device)
    return model, opt, lambda: (model(x) - y).pow(2).mean()


def w2(device: str) -> tuple[nn.Module, torch.optim.Optimizer, Callable[[], torch.Tensor]]:
    model = _mlp(8, 2048, nn.ReLU).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.randn(256, 2048, device=device), torch.randn(256, 2048, device=device)
    return model, opt, lambda: (model(x) - y).pow(2).mean()


class _LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(32, 256, num_layers=2, batch_first=True)
        self.head = nn.Linear(256, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # (B, T, H)
        return self.head(out[:, -1])


def w3(device: str) -> tuple[nn.Module, torch.optim.Optimizer, Callable[[], torch.Tensor]]:
    model = _LSTMNet().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(32, 100, 32, device=device), torch.randn(32, 1, device=device)
    return model, opt, lambda: (model(x) - y).pow(2).mean()


def w4(device: str) -> tuple[nn.Module, torch.optim.Optimizer, Callable[[], torch.Tensor]]:
    layer = nn.TransformerEncoderLayer(256, 4, dim_feedforward=1024, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(16, 128, 256, device=device)
    return model, opt, lambda: model(x).pow(2).mean()


WORKLOADS = {
    "W1": Workload("W1", "50-layer width-256 tanh MLP, batch 128, SGD", w1, 25),
    "W2": Workload("W2", "8-layer width-2048 ReLU MLP, batch 256, Adam", w2, 5),
    "W3": Workload("W3", "2-layer LSTM hidden 256, seq 100, batch 32, Adam", w3, 12),
    "W4": Workload("W4", "6-layer TransformerEncoder d256 h4, seq 128, batch 16, Adam", w4, 4),
}

# name -> watch() keyword arguments (None = no gradwatch)
CONFIGS: dict[str, dict[str, object] | None] = {
    "none": None,
    # A second, identical copy without gradwatch: its ratio to "none" is the noise floor of
    # the run (placement in memory, a slow phase of the machine), so read others against it.
    "none, 2nd copy": None,
    "naive .item() loop": None,
    # One fused norm pass over the gradients and nothing else: the least that any exact
    # per-layer gradient statistic must cost, measured in the same run.
    "floor: one norm pass": None,
    "grads every step": {"every": 1, "sample_every": 10**9, "activations": False},
    "all, sample_every=10": {"every": 1, "sample_every": 10},
    "all, every step": {"every": 1, "sample_every": 1},
}


def _naive_norms(model: nn.Module) -> list[float]:
    # What many tools do: one host sync per parameter.
    return [p.grad.norm().item() for p in model.parameters() if p.grad is not None]


class Runner:
    """One configuration of one workload: its own copy of the model (same seed, same init),
    optimizer and, for gradwatch configurations, a watch that stays open across blocks."""

    def __init__(self, workload: Workload, config: str, device: str = "cpu") -> None:
        torch.manual_seed(0)
        self.device = device
        self.model, self.opt, self.loss_fn = workload.build(device)
        self.config = config
        kwargs = CONFIGS[config]
        self.watch = (
            gw.watch(self.model, self.opt, flush_every=100, **kwargs)
            if kwargs is not None
            else None
        )

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn()
        loss.backward()
        if self.config == "naive .item() loop":
            _naive_norms(self.model)
        elif self.config == "floor: one norm pass":
            torch._foreach_norm([p.grad for p in self.model.parameters() if p.grad is not None])
        self.opt.step()
        if self.watch is not None:
            self.watch.log(loss=loss)

    def block(self, steps: int) -> float:
        if self.device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        if self.device != "cpu":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / steps

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()


def run(
    workloads: list[str], rounds: int | None, block: int, device: str = "cpu"
) -> list[dict[str, object]]:
    """Time blocks of ``block`` steps (one whole sampling cycle), rotating through the
    configurations every block so that slow phases of a shared machine hit all of them."""
    rows = []
    for key in workloads:
        wl = WORKLOADS[key]
        runners = {c: Runner(wl, c, device) for c in CONFIGS}
        try:
            for r in runners.values():  # warm-up: allocator, caches, the sampled step 0
                r.block(block)
            times: dict[str, list[float]] = {c: [] for c in CONFIGS}
            for i in range(rounds or wl.rounds):
                order = list(CONFIGS) if i % 2 == 0 else list(reversed(CONFIGS))
                for config in order:
                    times[config].append(runners[config].block(block))
        finally:
            for r in runners.values():
                r.close()
        for config in CONFIGS:
            ratios = [t / b for t, b in zip(times[config], times["none"], strict=True)]
            rows.append(
                {
                    "workload": key,
                    "config": config,
                    "step_ms": 1000 * statistics.median(times[config]),
                    "ratio": statistics.median(ratios),
                    "total": sum(times[config]) / sum(times["none"]),
                    "lo": min(ratios),
                    "hi": max(ratios),
                }
            )
            print(
                f"{key}  {config:22s} {rows[-1]['step_ms']:9.2f} ms  ratio {rows[-1]['ratio']:.3f}"
                f"  total {rows[-1]['total']:.3f}  [{rows[-1]['lo']:.3f}, {rows[-1]['hi']:.3f}]",
                flush=True,
            )
    return rows


def markdown(rows: list[dict[str, object]], threads: int, block: int, device: str) -> str:
    where = torch.cuda.get_device_name() if device != "cpu" else f"{platform.machine()} CPU"
    lines = [
        f"Measured {dt.date.today().isoformat()} on {where} ({os.cpu_count()} cores), "
        f"torch {torch.__version__}, {threads} threads, "
        f"blocks of {block} steps rotating through the configurations.",
        "",
        "| workload | configuration | median step (ms) | ratio to none (median) | spread (min-max) "
        "| ratio of totals |",
        "| --- | --- | ---: | ---: | --- | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['config']} | {r['step_ms']:.2f} | {r['ratio']:.3f} | "
            f"{r['lo']:.3f}-{r['hi']:.3f} | {r['total']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds of blocks (default: per workload)"
    )
    parser.add_argument("--block", type=int, default=10, help="steps per timed block")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (the budgets' device) or cuda")
    parser.add_argument("--markdown", help="print the markdown table to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for key in args.workloads:
        print(f"{key}: {WORKLOADS[key].description}")
    rows = run(args.workloads, args.rounds, args.block, args.device)
    table = markdown(rows, args.threads, args.block, args.device)
    print()
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")


if __name__ == "__main__":
    main()
