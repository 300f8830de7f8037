"""Load time and peak memory of a large trace: 1000 layers x 10,000 steps.

The trace is written synthetically with the store's own writer and schema (one chunk per
100 steps, the recorder's default flush), sampled metrics on every 10th step as the recorder
writes them. Then, each in a fresh process so peak RSS is its own:

* ``gw.load`` (wall time, peak RSS), and ``matrix("grad_rms")`` after it;
* ``gradwatch diagnose RUN --format json`` (wall time, peak RSS);
* ``gradwatch report RUN --out ...`` (wall time, peak RSS), unless ``--no-report``.

Usage::

    python benchmarks/trace_load.py [--dir /tmp/gw-big] [--layers 1000] [--steps 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SAMPLED = {"update_ratio", "act_mean", "act_std", "act_saturated", "act_dead", "out_grad_norm"}


def write_trace(run_dir: Path, n_layers: int, n_steps: int, flush: int = 100) -> None:
    """A synthetic run: a vanishing-gradient profile with noise, written chunk by chunk."""
    from gradwatch.trace import LAYER_METRICS, LayerInfo, RunWriter, run_meta
    from gradwatch.trace.schema import layer_table, scalar_table

    rng = np.random.default_rng(0)
    writer = RunWriter(run_dir, overwrite=True)
    layers = [
        LayerInfo(name=f"net.{i}", type="Linear", depth=i, num_params=65_792, activation="Sigmoid")
        for i in range(n_layers)
    ]
    config = {"every": 1, "sample_every": 10, "flush_every": flush, "activations": True}

    def meta(status: str, steps: int) -> dict[str, object]:
        return run_meta(
            status=status, created=time.time(), model={"class": "Synthetic"}, layers=layers,
            config=config, steps_recorded=steps, frameworks={}, extra={},
        )  # fmt: skip

    writer.write_meta(meta("running", 0))
    depth = np.arange(n_layers, dtype=np.int32)
    profile = np.exp(np.linspace(-12.0, 0.0, n_layers))  # input-side layers vanish
    for start in range(0, n_steps, flush):
        steps = np.arange(start, min(start + flush, n_steps), dtype=np.int64)
        block = np.full((len(steps), len(LAYER_METRICS), n_layers), np.nan)
        noise = rng.lognormal(0.0, 0.1, size=(len(steps), n_layers))
        for m, name in enumerate(LAYER_METRICS):
            values = profile * noise * (m + 1)
            if name in SAMPLED:
                values = np.where((steps % 10 == 0)[:, None], values, np.nan)
            block[:, m, :] = values
        block[:, LAYER_METRICS.index("nonfinite"), :] = 0.0
        writer.write_chunk("layers", layer_table(steps, depth, block))
        loss = 2.3 * np.exp(-steps / n_steps)
        writer.write_chunk(
            "scalars",
            scalar_table(
                steps,
                {"global_grad_norm": noise[:, -1], "skipped": np.zeros(len(steps)), "loss": loss},
            ),
        )
    writer.write_meta(meta("complete", n_steps))


_LOAD = """
import json, resource, sys, time
import gradwatch as gw
t0 = time.perf_counter()
t = gw.load(sys.argv[1])
t1 = time.perf_counter()
t.matrix("grad_rms")
t2 = time.perf_counter()
print(json.dumps({"load_s": t1 - t0, "first_matrix_s": t2 - t1,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(argv: list[str]) -> tuple[float, float, str]:
    """Wall time, peak RSS (MB) and stdout of one child process (its own rusage, by wait4)."""
    t0 = time.perf_counter()
    with Path(os.devnull).open("w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{argv} failed with exit code {proc.returncode}")
    return wall, usage.ru_maxrss / 1024, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/gw-bench-trace")
    parser.add_argument("--layers", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()
    run_dir = Path(args.dir) / f"run-{args.layers}x{args.steps}"
    if args.regenerate or not (run_dir / "meta.json").exists():
        t0 = time.perf_counter()
        write_trace(run_dir, args.layers, args.steps)
        print(f"wrote {run_dir} in {time.perf_counter() - t0:.1f} s", flush=True)
    size = sum(p.stat().st_size for p in run_dir.iterdir()) / 2**20
    print(f"trace: {args.layers} layers x {args.steps} steps, {size:.0f} MB on disk")

    env = {**os.environ, "MPLBACKEND": "Agg"}
    os.environ.update(env)
    _, _, out = _child([sys.executable, "-c", _LOAD, str(run_dir)])
    load = json.loads(out)
    print(
        f"gw.load: {load['load_s']:.2f} s, first matrix(): {load['first_matrix_s']:.2f} s, "
        f"peak RSS {load['peak_rss_mb']:.0f} MB"
    )
    cli = [sys.executable, "-m", "gradwatch"]
    wall, peak, _ = _child([*cli, "diagnose", str(run_dir), "--format", "json"])
    print(f"gradwatch diagnose: {wall:.1f} s, peak RSS {peak:.0f} MB")
    if not args.no_report:
        out_html = Path(args.dir) / "report.html"
        wall, peak, _ = _child([*cli, "report", str(run_dir), "--out", str(out_html)])
        print(f"gradwatch report: {wall:.1f} s, peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
