"""The overhead benchmark's workloads time what their names say: ``+compile`` the compiled
model (its loss called the eager module once, and every compiled row timed eager steps)."""

from __future__ import annotations

import torch
from torch._dynamo.utils import counters

from ._pages import load_script


def _frames_compiled(key: str, config: str) -> int:
    overhead = load_script("benchmarks/overhead.py")
    torch._dynamo.reset()
    counters.clear()
    runner = overhead.Runner(key, config, "cpu", False)
    try:
        for _ in range(25):  # (past the watch's dense start, whose sampled steps run eagerly)
            runner.step()
    finally:
        if runner.watch is not None:
            runner.watch.close()
    return int(counters["stats"]["unique_graphs"])


def test_a_compiled_workload_runs_the_compiled_model() -> None:
    """TINY+compile compiles its forward (one graph), watched or not; TINY compiles nothing."""
    assert _frames_compiled("TINY+compile", "none") == 1
    assert _frames_compiled("TINY+compile", "budget off, defaults") == 1
    assert _frames_compiled("TINY", "none") == 0
