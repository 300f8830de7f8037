"""Step time of a torch.compile'd model with and without gradwatch, side by side in one process.

Each configuration trains its own copy of a small MLP (same seed, same data): compiled without
gradwatch (twice: the second copy's ratio to the first is the noise floor, an A/A row),
compiled and watched in both orders (``gw.watch(torch.compile(model))`` and
``torch.compile(model)`` after ``gw.watch(model)``), and eager with and without gradwatch for
reference. gradwatch runs with its default options (``sample_every=10``, ``dense_steps=20``):
a sampled step runs eagerly (recording/compiled.py), so its cost is an eager step plus the
hooks, paid one step in ten after the first 21.

Every copy first takes ``dense_steps + 1 + block`` warm-up steps (compilation, the dense
start), so the timed blocks of ``block`` steps start after a sampled step and each holds one
sampled step: a watched plain module's process-wide eager window (opened before a sampled
step) is then always closed when the next copy takes its turn. The copies take turns
A B C ... then ... C B A; the table gives each configuration's median step time, the median of
its per-round ratios to "compiled" with their spread, and the ratio of total times.

Usage::

    python benchmarks/compile_overhead.py                       # ~3-5 minutes on 2 cores
    python benchmarks/compile_overhead.py --rounds 30
    python benchmarks/compile_overhead.py --write-docs docs/recording.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import gradwatch as gw

# The shared writer of generated doc blocks, beside this file (also when imported by tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _docs

DEPTH, WIDTH, BATCH = 8, 256, 128
DENSE, SAMPLE_EVERY = 20, 10  # gw.watch's defaults

# name -> (compiled, watched, order)
CONFIGS: dict[str, tuple[bool, bool, str]] = {
    "compiled": (True, False, ""),
    "compiled, 2nd copy (A/A)": (True, False, ""),
    "compiled + gradwatch: watch(compile(m))": (True, True, "compile_then_watch"),
    "compiled + gradwatch: compile after watch(m)": (True, True, "watch_then_compile"),
    "eager": (False, False, ""),
    "eager + gradwatch": (False, True, ""),
}
BASE = "compiled"


class MLP(nn.Module):
    """``DEPTH`` tanh layers of width ``WIDTH``: small enough that overheads show."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(DEPTH))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.tanh(layer(x))  # (B, WIDTH)
        return self.layers[-1](x)


class Runner:
    """One configuration: its own model copy, optimizer, data and (maybe) watch."""

    def __init__(self, config: str) -> None:
        compiled, watched, order = CONFIGS[config]
        torch.manual_seed(0)
        model = MLP()
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        self.x, self.y = torch.randn(BATCH, WIDTH), torch.randn(BATCH, WIDTH)
        fwd: Callable[[torch.Tensor], torch.Tensor] = model
        self.watch: gw.Watch | None = None
        if compiled and order == "compile_then_watch":
            fwd = torch.compile(model)
            self.watch = gw.watch(fwd, self.opt)  # type: ignore[arg-type]
        elif compiled and order == "watch_then_compile":
            self.watch = gw.watch(model, self.opt)
            fwd = torch.compile(model)
        elif compiled:
            fwd = torch.compile(model)
        elif watched:
            self.watch = gw.watch(model, self.opt)
        self.fwd = fwd
        self.steps = 0
        # Each timed step's time, by whether gradwatch samples it (eager) or not (compiled).
        self.kind_times: dict[str, list[float]] = {"plain": [], "sampled": []}

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss = (self.fwd(self.x) - self.y).pow(2).mean()
        loss.backward()
        self.opt.step()
        if self.watch is not None:
            self.watch.log(loss=loss)

    def block(self, steps: int, *, timed: bool = True) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            t0 = time.perf_counter()
            self.step()
            if timed:
                sampled = self.steps < DENSE or self.steps % SAMPLE_EVERY == 0
                self.kind_times["sampled" if sampled else "plain"].append(time.perf_counter() - t0)
            self.steps += 1
        return (time.perf_counter() - start) / steps

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()


def run(rounds: int, block: int) -> list[dict[str, object]]:
    """Median step times and ratios to ``BASE`` over ``rounds`` rotations of the copies."""
    if block % SAMPLE_EVERY:
        raise SystemExit(f"--block must be a multiple of {SAMPLE_EVERY} (got {block})")
    runners = {c: Runner(c) for c in CONFIGS}
    try:
        for name, r in runners.items():
            t0 = time.perf_counter()
            r.block(DENSE + 1 + block, timed=False)  # compilation, dense start, one cycle
            print(f"warm-up {name:46s} {time.perf_counter() - t0:6.1f} s", flush=True)
        times: dict[str, list[float]] = {c: [] for c in CONFIGS}
        for i in range(rounds):
            order = list(CONFIGS) if i % 2 == 0 else list(reversed(CONFIGS))
            for config in order:
                times[config].append(runners[config].block(block))
    finally:
        for r in runners.values():
            r.close()
    rows = []
    for config in CONFIGS:
        ratios = [t / b for t, b in zip(times[config], times[BASE], strict=True)]
        rows.append(
            {
                "config": config,
                "step_ms": 1000 * statistics.median(times[config]),
                "ratio": statistics.median(ratios),
                "total": sum(times[config]) / sum(times[BASE]),
                "lo": min(ratios),
                "hi": max(ratios),
                "plain_ms": 1000 * statistics.median(runners[config].kind_times["plain"]),
                "sampled_ms": 1000 * statistics.median(runners[config].kind_times["sampled"]),
            }
        )
        r = rows[-1]
        print(
            f"{config:46s} {r['step_ms']:8.2f} ms  ratio {r['ratio']:.3f}  "
            f"total {r['total']:.3f}  [{r['lo']:.3f}, {r['hi']:.3f}]",
            flush=True,
        )
    return rows


#: Columns of the generated table (tests/docs/test_generated.py checks docs against them).
COLUMNS = (
    "configuration",
    "median step (ms)",
    "ratio to compiled (median)",
    "spread (min-max)",
    "ratio of totals",
    "plain steps (ms)",
    "sampled steps (ms)",
)
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {"": [COLUMNS]}


def markdown(rows: list[dict[str, object]], threads: int, rounds: int, block: int) -> str:
    docs = _docs
    head = docs.header(
        f"python benchmarks/compile_overhead.py --rounds {rounds} --write-docs FILE",
        f"Inductor, {threads} thread(s); {DEPTH}-layer width-{WIDTH} tanh MLP, batch {BATCH}, "
        f"SGD; {rounds} rounds of {block}-step blocks rotating through the copies.",
    )
    body = [
        [
            str(r["config"]),
            f"{r['step_ms']:.2f}",
            f"{r['ratio']:.3f}",
            f"{r['lo']:.3f}-{r['hi']:.3f}",
            f"{r['total']:.3f}",
            f"{r['plain_ms']:.2f}",
            f"{r['sampled_ms']:.2f}",
        ]
        for r in rows
    ]
    note = (
        "Median step: per timed block of 10 steps (nine plain, one sampled). Plain and "
        "sampled steps: the median of single steps of each kind (for unwatched copies, the "
        "steps gradwatch would sample)."
    )
    return f"{head}\n\n{docs.table(COLUMNS, body)}\n\n{note}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="rotations of the copies")
    parser.add_argument("--block", type=int, default=10, help="steps per timed block")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write-docs", help="replace the generated table in this markdown file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = run(args.rounds, args.block)
    table = markdown(rows, args.threads, args.rounds, args.block)
    print()
    print(table)
    if args.write_docs:
        _docs.replace_block(args.write_docs, "benchmarks/compile_overhead.py", table)


if __name__ == "__main__":
    main()
