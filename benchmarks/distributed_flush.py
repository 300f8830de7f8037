"""Cost of gradwatch's per-flush collectives under DDP and FSDP2 (gloo, 2 processes, CPU).

Workload: the 50 x 256 tanh MLP of benchmark W1 (DESIGN.md's many-small-layers worst case),
batch 64 split over 2 ranks, SGD, ``flush_every=100``, ``sample_every=10``: 200 steps, so
two flushes (the second at close; the first window holds the 20 dense steps too). Prints, per wrapping, the median wall time of one flush's
reduction (both collectives and the derivations around them) on rank 0, timed after a
barrier so that the other rank's lag is not counted, and the mean step time (its barriers
included), so the reduction's share of training time can be read off. On a shared machine
the absolute times vary with its load; the header line gives the load average.

Run: ``PYTHONPATH=src python benchmarks/distributed_flush.py [--write-docs]``; with
``--write-docs`` the table replaces the generated block in docs/recording.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import gradwatch as gw

# The shared writer of generated doc blocks, beside this file (also when imported by tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _docs

STEPS = 200
DOC = Path(__file__).resolve().parents[1] / "docs" / "recording.md"
BEGIN = "<!-- BEGIN GENERATED: benchmarks/distributed_flush.py -->"
END = "<!-- END GENERATED -->"


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(50):
        layers += [nn.Linear(256, 256), nn.Tanh()]
    return nn.Sequential(*layers)


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    results: dict[str, Any] = {}
    try:
        for wrapping in ("DDP", "FSDP2"):
            model: nn.Module = _model()
            if wrapping == "DDP":
                model = nn.parallel.DistributedDataParallel(model)
            else:
                from torch.distributed.fsdp import fully_shard

                for layer in model:
                    if isinstance(layer, nn.Linear):
                        fully_shard(layer)
                fully_shard(model)
            opt = torch.optim.SGD(model.parameters(), lr=1e-3)
            x = torch.randn(32, 256)
            w = gw.watch(model, opt, flush_every=100, sample_every=10)
            reducer = w._buffer.reducer
            assert reducer is not None
            times: list[float] = []
            sizes: list[int] = []
            original = reducer.reduce_

            def timed(
                buf: Any,
                original: Any = original,
                reducer: Any = reducer,
                times: list[float] = times,
                sizes: list[int] = sizes,
            ) -> None:
                # Wait for the other rank first: its lag behind this one is not the flush's.
                dist.barrier()
                start = time.perf_counter()
                original(buf)
                times.append(time.perf_counter() - start)
                sizes.append(reducer._act.numel())

            reducer.reduce_ = timed  # type: ignore[method-assign]
            dist.barrier()
            start = time.perf_counter()
            for _ in range(STEPS):
                opt.zero_grad()
                loss = model(x).pow(2).mean()
                loss.backward()
                opt.step()
                w.log(loss=loss, reduce="mean")
            w.close()
            step_s = (time.perf_counter() - start) / STEPS
            results[wrapping] = {
                "flush_ms": 1e3 * statistics.median(times),
                "flushes": len(times),
                "step_ms": 1e3 * step_s,
                "act_values": sizes[0],
                "collectives": reducer.collectives,
            }
        if rank == 0:
            Path(out).write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Columns of the generated table (tests/docs/test_generated.py checks docs against them).
COLUMNS = (
    "wrapping",
    "one flush's reduction (median)",
    "collectives",
    "step time",
    "reduction per step, amortised",
)
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {"": [COLUMNS]}


def _table(results: dict[str, Any]) -> str:
    docs = _docs
    head = docs.header(
        "python benchmarks/distributed_flush.py --write-docs",
        "W1 (50 x 256 tanh MLP), 2 ranks x 32 samples, gloo, one thread per rank, "
        f"{STEPS} steps, `flush_every=100`, `sample_every=10`.",
    )
    rows = []
    for name, r in results.items():
        share = r["flush_ms"] / 100 / r["step_ms"]
        rows.append(
            [
                name,
                f"{r['flush_ms']:.2f} ms",
                f"{r['collectives']} in {r['flushes']} flushes",
                f"{r['step_ms']:.2f} ms",
                f"{100 * share:.2f}%",
            ]
        )
    return head + "\n\n" + docs.table(COLUMNS, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write-docs", action="store_true", help="update docs/recording.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "results.json")
        mp.start_processes(_worker, args=(_free_port(), out), nprocs=2, start_method="spawn")
        results = json.loads(Path(out).read_text())
    table = _table(results)
    print(table)
    if args.write_docs:
        _docs.replace_block(DOC, "benchmarks/distributed_flush.py", table)


if __name__ == "__main__":
    main()
