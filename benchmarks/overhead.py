"""Step-time overhead of recording, measured side by side in one process.

Each workload trains one copy of its model per configuration (no recording twice, gradwatch
at several settings), all built from the same seed. The copies take turns, a block of
``--block`` steps each, A B C D E then E D C B A, for several rounds, so that the slow phases
of a shared machine hit every configuration alike. The table reports, per workload and
configuration, the median step time, the median of the per-round ratios to "none" with their
spread (min-max over rounds), the ratio of total times with its 95% bootstrap interval over
rounds (what this run can resolve), and for the budgeted rows the spacing the budget chose and
the share it measured.

Before timing, every copy trains ``--warmup`` steps (60, W1 300; on a GPU 300, W2 1600, GPT2
and RESNET50 60): the dense start (20 sampled steps) and the budget's first decisions are
behind it, as in a run of thousands of steps.

Workloads: W1-W4 (small models, the many-small-layers worst case first), GPT2 (a
GPT-2-small-shaped transformer, 12 x 768, Hugging Face ``GPT2Config``, random init) and
RESNET50 (Hugging Face ``ResNetConfig``'s ResNet-50, random init). Append ``+compile`` to a
name for the ``torch.compile``d model (slow to warm up on CPU). ``--batch gpu`` (the default
with ``--device cuda``) uses GPU-size batches.

Usage::

    python benchmarks/overhead.py                            # W1-W4, GPT2, RESNET50 on CPU
    python benchmarks/overhead.py --workloads W1 GPT2+compile --rounds 10
    python benchmarks/overhead.py --device cuda              # GPU-size batches
    python benchmarks/overhead.py --markdown docs/performance.md  # rewrite the generated block
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import gradwatch as gw

# The shared writer of generated doc blocks, beside this file (also when imported by tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _docs

# The loss takes the module to call: the compiled wrapper under +compile (a loss that called
# the builder's own module ran the eager model there: every +compile row before 2026-12-01).
Built = tuple[nn.Module, torch.optim.Optimizer, Callable[[nn.Module], torch.Tensor]]


@dataclass
class Workload:
    name: str
    description: str
    build: Callable[[str, bool], Built]  # (device, GPU-size batch) -> model, optimizer, loss
    rounds: int  # default rounds: ~1-4 minutes per workload on a 2-core CPU
    # Untimed steps per copy first: the dense start and the budget's decisions behind it. W1
    # needs 300: its plain steps alone exceed 3%, and the budget thins them only once enough
    # steps past the dense start were measured (recording/schedule.py, _EVIDENCE).
    warmup: int = 60
    # On a GPU steps take milliseconds, so W1-W4 warm up 300 steps each, the budget's
    # plain-step decision (16 measured steps) behind the timing; GPT2 and RESNET50 at
    # GPU-size batches take tens of ms a step and are never thinned that way. W2's 2.4 ms
    # GPU step makes its flushes cost more than a quarter of the budget, so its window grows
    # 100 -> 1600 steps over the first 1500: it warms up past that.
    gpu_warmup: int = 300

    def default_warmup(self, device: str) -> int:
        """Untimed steps per copy on ``device`` (``--warmup`` not given)."""
        return self.warmup if device == "cpu" else self.gpu_warmup


def _mlp(depth: int, width: int, act: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers[:-1])


# W1-W4 keep their sizes whatever the batch option: their tables compare across runs.
def w1(device: str, big: bool) -> Built:
    model = _mlp(50, 256, nn.Tanh).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.randn(128, 256, device=device), torch.randn(128, 256, device=device)
    return model, opt, lambda m: (m(x) - y).pow(2).mean()


def tiny(device: str, big: bool) -> Built:
    """Sub-millisecond steps on a CPU: the recorder's fixed costs per step show."""
    model = _mlp(5, 64, nn.Tanh).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    x, y = torch.randn(32, 64, device=device), torch.randn(32, 64, device=device)
    return model, opt, lambda m: (m(x) - y).pow(2).mean()


def w2(device: str, big: bool) -> Built:
    model = _mlp(8, 2048, nn.ReLU).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.randn(256, 2048, device=device), torch.randn(256, 2048, device=device)
    return model, opt, lambda m: (m(x) - y).pow(2).mean()


class _LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(32, 256, num_layers=2, batch_first=True)
        self.head = nn.Linear(256, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # (B, T, H)
        return self.head(out[:, -1])


def w3(device: str, big: bool) -> Built:
    model = _LSTMNet().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(32, 100, 32, device=device), torch.randn(32, 1, device=device)
    return model, opt, lambda m: (m(x) - y).pow(2).mean()


def w4(device: str, big: bool) -> Built:
    layer = nn.TransformerEncoderLayer(256, 4, dim_feedforward=1024, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(16, 128, 256, device=device)
    return model, opt, lambda m: m(x).pow(2).mean()


def gpt2(device: str, big: bool) -> Built:
    """GPT-2 small's shape (12 blocks x 768, 12 heads), random init, dropout off (identical
    copies). On CPU a small vocabulary and SGD keep five copies within a few GB and a step
    under a second; GPU-size: the real 50257-token vocabulary, AdamW, 8 x 512 tokens."""
    from transformers import GPT2Config, GPT2LMHeadModel

    vocab = 50257 if big else 8192
    config = GPT2Config(
        vocab_size=vocab,
        n_positions=1024,
        n_embd=768,
        n_layer=12,
        n_head=12,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(config).to(device)
    opt: torch.optim.Optimizer = (
        torch.optim.AdamW(model.parameters(), lr=1e-4)
        if big
        else torch.optim.SGD(model.parameters(), lr=1e-4)
    )
    batch, seq = (8, 512) if big else (2, 64)
    ids = torch.randint(0, vocab, (batch, seq), device=device)
    return model, opt, lambda m: m(input_ids=ids, labels=ids).loss


def resnet50(device: str, big: bool) -> Built:
    """ResNet-50 (``ResNetConfig``'s defaults: bottleneck blocks 3-4-6-3), random init, SGD
    with momentum. CPU: 4 images of 64 x 64; GPU-size: 64 images of 224 x 224."""
    from transformers import ResNetConfig, ResNetForImageClassification

    model = ResNetForImageClassification(ResNetConfig(num_labels=1000)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    batch, side = (64, 224) if big else (4, 64)
    x = torch.randn(batch, 3, side, side, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    return model, opt, lambda m: m(pixel_values=x, labels=y).loss


WORKLOADS = {
    # 25 rounds read W1's default at 1.050 where 60 read 1.021 and 1.026: 50 (~3 min)
    "W1": Workload("W1", "50-layer width-256 tanh MLP, batch 128, SGD", w1, 50, warmup=300),
    # W2 and W4 10 rounds: over 4, W4's default read 1.056 (bootstrap 1.009-1.099) where 12
    # read 0.992 (0.960-1.029): too few rounds make the interval too narrow.
    "W2": Workload("W2", "8-layer width-2048 ReLU MLP, batch 256, Adam", w2, 10, gpu_warmup=1600),
    # Warmed up past the flush window's growth (100 + 200 + 400 + 800 steps); time it in
    # blocks of hundreds of steps (--block 500): a block of 10 is 3 ms.
    "TINY": Workload(
        "TINY", "5-layer width-64 tanh MLP, batch 32, SGD", tiny, 20, warmup=3000, gpu_warmup=3000
    ),
    "W3": Workload("W3", "2-layer LSTM hidden 256, seq 100, batch 32, Adam", w3, 12),
    "W4": Workload("W4", "6-layer TransformerEncoder d256 h4, seq 128, batch 16, Adam", w4, 10),
    "GPT2": Workload(
        "GPT2",
        "GPT-2 small shape 12x768 (CPU: vocab 8192, 2x64 tokens, SGD)",
        gpt2,
        8,  # 4 rounds read GPT2 at 1.051 where 16 read 1.024 (A/A 1.007): too few for 3%
        gpu_warmup=60,
    ),
    "RESNET50": Workload(
        # 4 rounds read 1.060 where 16 read 1.012 (A/A 0.999); a round is ~8 s on CPU
        "RESNET50",
        "ResNet-50 (CPU: 4 images 64x64, SGD momentum)",
        resnet50,
        16,
        gpu_warmup=60,
    ),
}
COMPILE = "+compile"

# name -> watch() keyword arguments (None = no gradwatch)
CONFIGS: dict[str, dict[str, object] | None] = {
    "none": None,
    # A second, identical copy without gradwatch: its ratio to "none" is the noise floor of
    # the run (placement in memory, a slow phase of the machine), so read others against it.
    "none, 2nd copy (A/A)": None,
    "default (budget 3%)": {},
    "budget off, defaults": {"overhead": None},
    "everything every step": {"sample_every": 1, "overhead": None},
}


class Runner:
    """One configuration of one workload: its own copy of the model (same seed, same init),
    optimizer and, for gradwatch configurations, a watch that stays open across blocks."""

    def __init__(self, key: str, config: str, device: str, big: bool) -> None:
        torch.manual_seed(0)
        self.device = device
        name, compiled = key.removesuffix(COMPILE), key.endswith(COMPILE)
        model, self.opt, loss_fn = WORKLOADS[name].build(device, big)
        if compiled:
            # The watch sees the compiled module, as a user's would.
            model = torch.compile(model)  # type: ignore[assignment]
        self.model, self.loss_fn = model, loss_fn
        kwargs = CONFIGS[config]
        self.watch = (
            gw.watch(self.model, self.opt, **kwargs)  # type: ignore[arg-type]
            if kwargs is not None
            else None
        )

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model)
        loss.backward()
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

    def schedule(self) -> dict[str, Any] | None:
        """The budget's state: its spacing and measured share (budgeted rows only)."""
        if self.watch is None:
            return None
        return self.watch._schedule.meta() if self.watch.overhead is not None else None

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()


def run(
    workloads: list[str],
    rounds: int | None,
    block: int,
    *,
    warmup: int | None,
    device: str = "cpu",
    big: bool = False,
    configs: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Time blocks of ``block`` steps, rotating through the configurations every block so
    that slow phases of a shared machine hit all of them."""
    names = configs or list(CONFIGS)
    rows = []
    for key in workloads:
        wl = WORKLOADS[key.removesuffix(COMPILE)]
        runners = {c: Runner(key, c, device, big) for c in names}
        default_warmup = wl.default_warmup(device)
        warm = default_warmup if warmup is None else warmup
        try:
            for r in runners.values():  # dense start, allocator, caches, compilation
                r.block(warm)
            times: dict[str, list[float]] = {c: [] for c in names}
            for i in range(rounds or wl.rounds):
                order = names if i % 2 == 0 else list(reversed(names))
                for config in order:
                    times[config].append(runners[config].block(block))
            schedules = {c: r.schedule() for c, r in runners.items()}
        finally:
            for r in runners.values():
                r.close()
        for config in names:
            ratios = [t / b for t, b in zip(times[config], times["none"], strict=True)]
            row: dict[str, Any] = {
                "workload": key,
                "config": config,
                "step_ms": 1000 * statistics.median(times[config]),
                "ratio": statistics.median(ratios),
                "total": sum(times[config]) / sum(times["none"]),
                "interval": total_interval(times[config], times["none"]),
                "lo": min(ratios),
                "hi": max(ratios),
                "schedule": schedules[config],
            }
            rows.append(row)
            print(
                f"{key:16s} {config:24s} {row['step_ms']:9.2f} ms  ratio {row['ratio']:.3f}  "
                f"total {row['total']:.3f} ({row['interval'][0]:.3f}-{row['interval'][1]:.3f})  "
                f"[{row['lo']:.3f}, {row['hi']:.3f}]  {_budget(row)}",
                flush=True,
            )
    return rows


def total_interval(
    times: list[float], base: list[float], resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """A 95% interval of ``sum(times) / sum(base)`` by the bootstrap over rounds.

    Each round is a pair of blocks timed side by side (a slow phase of the machine hits
    both), so rounds are resampled whole, with replacement: the spread of the ratio over the
    resamples is what the run's rounds can resolve. A target inside the interval is not
    missed (or met) by this run alone.
    """
    rng = random.Random(seed)
    k = len(base)
    ratios = []
    for _ in range(resamples):
        picks = [rng.randrange(k) for _ in range(k)]
        ratios.append(sum(times[i] for i in picks) / sum(base[i] for i in picks))
    ratios.sort()
    return ratios[int(0.025 * resamples)], ratios[int(0.975 * resamples) - 1]


def _budget(row: dict[str, Any]) -> str:
    sched = row.get("schedule")
    if not sched:
        return ""
    share = sched.get("measured_share")
    text = f"sampled every {sched['sample_spacing']}"
    if sched.get("record_spacing", 1) > 1:
        text += f", gradients every {sched['record_spacing']}"
    if share is not None:
        text += f"; measured {100 * share:.1f}%"
    cost = sched.get("cost_ms") or {}
    if cost.get("sampled") is not None:
        # What the share is made of (ms per step of each kind; flushes spread over steps).
        parts = [f"{k} {cost[k]:.2f}" for k in ("idle", "plain", "sampled") if cost.get(k)]
        parts.append(f"flush {cost['flush_per_step']:.2f}")
        text += " (ms: " + ", ".join(parts) + ")"
    return text


COLUMNS = (
    "workload",
    "configuration",
    "median step (ms)",
    "ratio to none (median)",
    "spread (min-max)",
    "ratio of totals",
    "95% interval (bootstrap)",
    "budget's choice",
)
#: The columns before the interval was added: the GPU blocks keep them until a GPU run
#: rewrites them (no GPU was lent to the session that added it).
COLUMNS_BEFORE_INTERVAL = tuple(c for c in COLUMNS if c != "95% interval (bootstrap)")
#: The tables this script writes into docs/performance.md (checked by tests/docs).
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {
    "": [COLUMNS],
    "gpu": [COLUMNS, COLUMNS_BEFORE_INTERVAL],
    "gpu-compile": [COLUMNS, COLUMNS_BEFORE_INTERVAL],
}


def _default_warmups(rows: list[dict[str, Any]], device: str) -> str:
    """The default warm-up of the run's workloads, e.g. "300 (W2: 1600; GPT2, RESNET50: 60)"."""
    by_steps: dict[int, list[str]] = {}
    for name in dict.fromkeys(row["workload"] for row in rows):
        wl = WORKLOADS[name.removesuffix(COMPILE)]
        by_steps.setdefault(wl.default_warmup(device), []).append(name)
    if not by_steps:
        return "no"
    common = max(by_steps, key=lambda steps: len(by_steps[steps]))
    others = [
        f"{', '.join(names)}: {steps}" for steps, names in by_steps.items() if steps != common
    ]
    return f"{common}" + (f" ({'; '.join(others)})" if others else "")


def markdown(
    rows: list[dict[str, Any]],
    command: str,
    block: int,
    *,
    warmup: int | None,
    device: str,
    big: bool,
) -> str:
    where = torch.cuda.get_device_name() if device != "cpu" else "CPU"
    note = (
        f"{where}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{'GPU-size' if big else 'CPU-size'} batches, "
        + (f"{warmup}" if warmup is not None else _default_warmups(rows, device))
        + " warm-up steps per copy, blocks "
        f"of {block} steps rotating through the configurations."
    )
    lines = [
        _docs.header(command, note),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "| --- | --- | ---: | ---: | --- | ---: | --- | --- |",
    ]
    for r in rows:
        lo, hi = r["interval"]
        lines.append(
            f"| {r['workload']} | {r['config']} | {r['step_ms']:.2f} | {r['ratio']:.3f} | "
            f"{r['lo']:.3f}-{r['hi']:.3f} | {r['total']:.3f} | {lo:.3f}-{hi:.3f} | "
            f"{_budget(r)} |"
        )
    return "\n".join(lines)


def _workload(name: str) -> str:
    if name.removesuffix(COMPILE) not in WORKLOADS:
        choices = ", ".join(WORKLOADS)
        raise argparse.ArgumentTypeError(
            f"unknown workload {name!r}: choose from {choices}, each optionally +compile"
        )
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--workloads",
        nargs="+",
        type=_workload,
        default=[name for name in WORKLOADS if name != "TINY"],
        help="W1 W2 W3 W4 GPT2 RESNET50 (the default), TINY (sub-millisecond steps: use "
        "--block 500), each optionally with +compile (e.g. GPT2+compile)",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds of blocks (default: per workload)"
    )
    parser.add_argument("--block", type=int, default=10, help="steps per timed block")
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed steps per copy first (default: 60, W1 300)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--batch",
        choices=["cpu", "gpu"],
        default=None,
        help="batch sizes: cpu (small, the default on CPU) or gpu (the default on cuda)",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=list(CONFIGS),
        default=None,
        help='configurations to time (default: all; "none" is always included)',
    )
    parser.add_argument("--markdown", help="write the table into this file's generated block")
    parser.add_argument(
        "--docs-block",
        default=None,
        help='the generated block to write: "" (CPU, the default there), "gpu" (the default '
        'on cuda) or "gpu-compile"',
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    big = (args.batch or ("gpu" if args.device != "cpu" else "cpu")) == "gpu"
    for key in args.workloads:
        print(f"{key}: {WORKLOADS[key.removesuffix(COMPILE)].description}")
    configs = None
    if args.configs:
        configs = ["none"] + [c for c in args.configs if c != "none"]
    rows = run(
        args.workloads,
        args.rounds,
        args.block,
        warmup=args.warmup,
        device=args.device,
        big=big,
        configs=configs,
    )
    import sys

    command = "python benchmarks/overhead.py " + " ".join(sys.argv[1:])
    table = markdown(
        rows, command.strip(), args.block, warmup=args.warmup, device=args.device, big=big
    )
    print()
    print(table)
    if args.markdown:
        # CPU and GPU tables are separate blocks of the same page.
        name = args.docs_block
        if name is None:
            name = "gpu" if args.device != "cpu" else ""
        _docs.replace_block(args.markdown, "benchmarks/overhead.py", table, name)


if __name__ == "__main__":
    main()
