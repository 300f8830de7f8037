"""What the live layer costs: milliseconds per flush, and its share of a flush window.

Three measurements:

1. **Per flush, real training.** A ``layers`` x (Linear + Tanh) MLP trains with the recorder
   and a :class:`~gradwatch.live.LiveDiagnosis` that checks at every flush (``max_share=0``,
   no budget), ``flush_every=100``. Printed: the median check time (ms per flush) and its
   share of the flush window (100 x the median step time of the same model, unrecorded).
2. **Per flush, long runs.** The same check on synthetic flushes of 100 steps fed to the
   listener until 10,000 steps: the check reads every step so far, so its cost grows with
   the run; this is the curve the cost budget (``live.MAX_SHARE``) keeps under 1%.
3. **Step time at the defaults.** The 50-layer MLP (W1 of benchmarks/overhead.py) with
   ``gradwatch.recording.watch`` vs ``gw.watch`` (live, defaults), in alternating blocks.

``--stream-only`` times the TensorBoard stream per flush instead (synthetic flushes).

Run: ``PYTHONPATH=src python benchmarks/live_cost.py [--quick] [--write-docs] [--stream-only]``
(``--write-docs`` rewrites the generated block of docs/performance.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import gradwatch as gw
from gradwatch.diagnosis import diagnose
from gradwatch.live import LiveDiagnosis
from gradwatch.live import online as online_mod
from gradwatch.live.tables import HostTables
from gradwatch.recording import Flush
from gradwatch.recording import watch as record
from gradwatch.trace import LAYER_METRICS, LayerInfo, layer_table, run_meta, scalar_table
from gradwatch.trace.schema import tag_flush

# The shared writer of generated doc blocks, beside this file (also when imported by tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _docs

FLUSH = 100
DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
BEGIN = "<!-- BEGIN GENERATED: benchmarks/live_cost.py -->"
END = "<!-- END GENERATED -->"


def _mlp(layers: int, width: int) -> nn.Sequential:
    torch.manual_seed(0)
    mods: list[nn.Module] = []
    for _ in range(layers):
        mods += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*mods)


def _steps(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, n: int, w: Any) -> float:
    """Seconds per step over ``n`` steps."""
    t0 = time.perf_counter()
    for _ in range(n):
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if w is not None:
            w.log(loss=loss)
    return (time.perf_counter() - t0) / n


def per_flush_real(layers: int, width: int, batch: int, steps: int) -> dict[str, float]:
    model = _mlp(layers, width)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(batch, width)
    _steps(model, opt, x, 3, None)
    step = statistics.median(_steps(model, opt, x, 5, None) for _ in range(3))
    live = LiveDiagnosis(on_finding=lambda f: None, max_share=0)
    with record(model, opt, flush_every=FLUSH) as w:
        w.add_flush_listener(live)
        _steps(model, opt, x, steps, w)
    costs = [c for s, c in live.checks if s % FLUSH == 0]
    cost = statistics.median(costs)
    return {"step_ms": step * 1e3, "check_ms": cost * 1e3, "share": cost / (FLUSH * step)}


class _StubWatch:
    """What LiveDiagnosis reads of a Watch: the metadata and the run directory."""

    run_dir = None

    def __init__(self, layers: int) -> None:
        infos = [
            LayerInfo(f"net.{2 * i}", "Linear", i, 4160, activation="Tanh") for i in range(layers)
        ]
        self.meta = run_meta(
            status="running",
            created=0.0,
            model={"class": "Sequential"},
            layers=infos,
            config={"every": 1, "sample_every": 10, "dense_steps": 20, "flush_every": FLUSH},
            steps_recorded=0,
            frameworks={},
            extra={},
        )

    def _meta(self, status: str) -> dict[str, Any]:
        return self.meta


def _synthetic_flush(layers: int, start: int, rng: np.random.Generator) -> Flush:
    """100 steps of healthy-looking values (sampled metrics every 10th step)."""
    steps = np.arange(start, start + FLUSH)
    block = np.exp(0.1 * rng.standard_normal((FLUSH, len(LAYER_METRICS), layers)))
    block[:, LAYER_METRICS.index("nonfinite"), :] = 0.0
    sampled = steps % 10 == 0
    for m in ("update_ratio", "act_mean", "act_std", "act_saturated", "act_dead", "out_grad_norm"):
        block[~sampled, LAYER_METRICS.index(m), :] = np.nan
    block[:, LAYER_METRICS.index("act_dead"), :] *= 0.01
    block[:, LAYER_METRICS.index("act_saturated"), :] *= 0.01
    tables = [
        ("layers", layer_table(steps, np.arange(layers), block)),
        ("scalars", scalar_table(steps, {"loss": np.exp(-steps / 5000), "skipped": 0 * steps})),
    ]
    return Flush(tables=tag_flush(tables, start + FLUSH), end_step=start + FLUSH, final=False)


def per_flush_growth(layers: int, at: tuple[int, ...]) -> dict[int, float]:
    """Check time (ms: the trace over the host tables, then ``diagnose``) at ``at`` steps."""
    rng = np.random.default_rng(0)
    tables = HostTables()
    stub = _StubWatch(layers)
    out = {}
    for start in range(0, max(at), FLUSH):
        flush = _synthetic_flush(layers, start, rng)
        tables.add(flush.tables, layers)
        if flush.end_step in at:
            t0 = time.perf_counter()
            diagnose(tables.trace(stub.meta))
            out[flush.end_step] = (time.perf_counter() - t0) * 1e3
    return out


def stream_cost(layers: int, flushes: int = 5) -> float:
    """Median ms per flush of the TensorBoard stream (synthetic flushes of 100 steps)."""
    import tempfile

    from gradwatch.live import TensorBoardStream

    rng = np.random.default_rng(0)
    stub = _StubWatch(layers)
    with tempfile.TemporaryDirectory() as logdir:
        stream = TensorBoardStream(logdir)
        times = []
        for start in range(0, flushes * FLUSH, FLUSH):
            flush = _synthetic_flush(layers, start, rng)
            t0 = time.perf_counter()
            stream(stub, flush)  # type: ignore[arg-type]
            times.append(time.perf_counter() - t0)
        stream.close()
    return statistics.median(times) * 1e3


def defaults_step_time(rounds: int, block: int = 20) -> tuple[float, float]:
    """Median per-round ratio (live / recorder) of W1's step time, and the spread's width."""
    x = torch.randn(128, 256)
    runs = {}
    for name, make in (("record", record), ("live", gw.watch)):
        model = _mlp(50, 256)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        kwargs = {"on_finding": lambda f: None} if name == "live" else {}
        runs[name] = (model, opt, make(model, opt, **kwargs))  # type: ignore[operator]
    ratios = []
    for r in range(rounds):
        order = ["record", "live"] if r % 2 == 0 else ["live", "record"]
        t = {n: _steps(runs[n][0], runs[n][1], x, block, runs[n][2]) for n in order}
        ratios.append(t["live"] / t["record"])
    for _, _, w in runs.values():
        w.close()
    q = np.quantile(ratios, [0.25, 0.75])
    return float(np.median(ratios)), float(q[1] - q[0])


#: Columns of the generated tables (tests/docs/test_generated.py checks docs against them).
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {
    "": [
        ("layers", "step (ms)", "check per flush (ms)", "share of a 100-step window"),
        ("layers", "..."),
    ]
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument(
        "--stream-only", action="store_true", help="only the TensorBoard stream's cost"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.stream_only:
        for n in (50, 1000):
            print(f"TensorBoard stream, {n} layers: {stream_cost(n):.0f} ms per flush", flush=True)
        return
    lines = []
    real = {
        50: per_flush_real(50, 256, 128, 300 if args.quick else 500),
        1000: per_flush_real(1000, 16, 16, 200 if args.quick else 300),
    }
    lines.append("| layers | step (ms) | check per flush (ms) | share of a 100-step window |")
    lines.append("| ---: | ---: | ---: | ---: |")
    for n, r in real.items():
        lines.append(
            f"| {n} | {r['step_ms']:.1f} | {r['check_ms']:.1f} | {100 * r['share']:.2f}% |"
        )
    print("\n".join(lines), flush=True)
    at = (1000, 2000, 5000) if args.quick else (1000, 5000, 10000)
    growth = {n: per_flush_growth(n, at) for n in (50, 1000)}
    lines += ["", "| layers | " + " | ".join(f"check at {s} steps (ms)" for s in at) + " |"]
    lines.append("| ---: |" + " ---: |" * len(at))
    for n, g in growth.items():
        cells = " | ".join(f"{g[s]:.0f}" if s in g else "-" for s in at)
        lines.append(f"| {n} | {cells} |")
    print("\n".join(lines[-4:]), flush=True)
    ratio, iqr = defaults_step_time(8 if args.quick else 20)
    lines += [
        "",
        f"W1 (50 x 256 tanh MLP) step time, `gw.watch` at its defaults over the bare recorder: "
        f"median ratio {ratio:.3f} (interquartile range {iqr:.3f}); live budget "
        f"`MAX_SHARE` = {online_mod.MAX_SHARE:.0%}.",
    ]
    print(lines[-1], flush=True)
    if args.write_docs:
        docs = _docs
        head = docs.header(
            f"python benchmarks/live_cost.py{' --quick' if args.quick else ''} --write-docs",
            f"{torch.get_num_threads()} thread(s), torch {torch.__version__}.",
        )
        text = DOC.read_text()
        if BEGIN not in text:  # the section is appended the first time
            DOC.write_text(text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n")
        docs.replace_block(DOC, "benchmarks/live_cost.py", "\n".join([head, "", *lines]))


if __name__ == "__main__":
    main()
