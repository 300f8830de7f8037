"""Time ``gw.diagnose`` on a 1,000-layer x 10,000-step trace (target: under 5 s).

Builds the trace with ``Trace.from_arrays``: every per-step metric on every step, the sampled
ones (update_ratio, act_*, out_grad_norm) on every 10th step (NaN elsewhere, as the recorder
writes them), the loss and the global norm as scalars, and a 64-step recurrent profile on
one layer. Values are noisy but healthy-looking, so every rule reads all of its data.

Run: ``PYTHONPATH=src python benchmarks/diagnose_speed.py [--layers N] [--steps N]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gradwatch import diagnose
from gradwatch.trace import LayerInfo, Trace


def build_trace(n_layers: int, n_steps: int, sample_every: int = 10, seed: int = 0) -> Trace:
    """A synthetic trace of the given size with every metric the rules read."""
    rng = np.random.default_rng(seed)
    layers = [
        LayerInfo(
            name=f"blocks.{i}.linear",
            type="Linear",
            depth=i,
            num_params=256 * 256,
            shapes={"weight": [256, 256], "bias": [256]},
            activation="ReLU",
        )
        for i in range(n_layers)
    ]
    shape = (n_steps, n_layers)
    sampled = np.full(n_steps, False)
    sampled[::sample_every] = True

    def noisy(level: float, spread: float = 0.1) -> np.ndarray:
        return level * np.exp(spread * rng.standard_normal(shape))

    def only_sampled(mat: np.ndarray) -> np.ndarray:
        mat[~sampled] = np.nan
        return mat

    metrics = {
        "grad_norm": noisy(1e-2),
        "grad_rms": noisy(1e-4),
        "grad_max": noisy(1e-3),
        "weight_norm": noisy(22.6, 0.01),  # He scale: sqrt(2/256) * 256,
        "nonfinite": np.zeros(shape),
        "update_ratio": only_sampled(noisy(1e-3)),
        "act_mean": only_sampled(noisy(0.5)),
        "act_std": only_sampled(noisy(1.0)),
        "act_saturated": only_sampled(noisy(0.01)),
        "act_dead": only_sampled(noisy(0.1)),
        "out_grad_norm": only_sampled(noisy(1e-2)),
    }
    steps = np.arange(n_steps)
    scalars = {
        "loss": 2.0 * np.exp(-steps / n_steps) + 0.01 * rng.standard_normal(n_steps),
        "global_grad_norm": 0.3 * np.exp(0.1 * rng.standard_normal(n_steps)),
        "skipped": np.zeros(n_steps),
    }
    r_steps = steps[sampled]
    recurrent = {layers[0].name: (r_steps, np.exp(0.1 * rng.standard_normal((len(r_steps), 64))))}
    return Trace.from_arrays(layers, steps, metrics, scalars=scalars, recurrent=recurrent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    t0 = time.perf_counter()
    trace = build_trace(args.layers, args.steps)
    print(f"built {trace!r} in {time.perf_counter() - t0:.2f} s")
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        findings = diagnose(trace)
        times.append(time.perf_counter() - t0)
    print(f"findings: {[f.rule for f in findings]}")
    print(
        f"diagnose: best {min(times):.2f} s, median {float(np.median(times)):.2f} s "
        f"over {args.repeat} runs ({args.layers} layers x {args.steps} steps)"
    )


if __name__ == "__main__":
    main()
