"""The recorder's operators per step on the accelerator path, counted without a GPU.

On a GPU every operator that is not a view launches a kernel, and a small model's step is
bound by those launches. The model on PyTorch's meta device (shapes, no values) takes the
recorder's accelerator branches, so its operators can be counted here; counts, not timings,
so a regression shows on any machine (``benchmarks/sampled_step.py --device meta`` prints
them by operator).
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import gradwatch as gw


def _sampled_step_bench() -> Any:
    """benchmarks/sampled_step.py, which counts operators (``CountOps``), says which are
    views and lets a meta model in (``on_meta``)."""
    path = Path(__file__).parents[2] / "benchmarks" / "sampled_step.py"
    spec = importlib.util.spec_from_file_location("sampled_step", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_BENCH = _sampled_step_bench()


@pytest.fixture(autouse=True)
def on_meta() -> Iterator[None]:
    """Let the recorder take a meta model (it refuses one: no values to record)."""
    with _BENCH.on_meta("meta"):
        yield


def _mlp(widths: list[int], act: Callable[[], nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(widths):
        layers += [nn.Linear(fan_in, fan_out), act()]
    return nn.Sequential(*layers[:-1])


def _kernels(
    widths: list[int],
    act: Callable[[], nn.Module],
    sample_every: int | None,
    optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
) -> int:
    """Operators (not views) of step 5 of a meta MLP, watched (sampled where 5 % sample_every
    == 0) or not (None)."""
    model = _mlp(widths, act).to("meta")
    opt = optimizer(model.parameters(), lr=0.1)
    x = torch.randn(8, widths[0], device="meta")
    watch = None
    if sample_every is not None:
        watch = gw.watch(model, opt, sample_every=sample_every, dense_steps=0, overhead=None)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model(x).pow(2).mean().backward()
        opt.step()

    try:
        for _ in range(5):
            step()
        with _BENCH.CountOps() as mode:
            step()
    finally:
        if watch is not None:
            # close() removes the hooks and lets compiled code run compiled again (global
            # state) before its final flush, which cannot copy meta tensors to the host.
            with contextlib.suppress(NotImplementedError):
                watch.close()
    return sum(n for op, n in mode.ops.items() if op not in _BENCH.VIEW_OPS)


def _recorder_kernels(
    widths: list[int],
    act: Callable[[], nn.Module],
    sampled: bool,
    optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
) -> int:
    bare = _kernels(widths, act, None, optimizer)
    return _kernels(widths, act, 1 if sampled else 1000, optimizer) - bare


def test_a_sampled_step_of_a_50_layer_mlp_stays_within_37_kernels() -> None:
    # W1's shape (50 tanh layers; narrow here, counts do not depend on width): 94 kernels
    # when the target of halving them was set, 35 operators now (every one of the gradient,
    # weight, update, activation and output-gradient statistics of 50 layers; SGD's update
    # read from its own terms). Under Adam the update comes from a copy of the weights: 41.
    widths = [16] * 51
    assert _recorder_kernels(widths, nn.Tanh, sampled=True) <= 37
    assert _recorder_kernels(widths, nn.Tanh, sampled=True, optimizer=torch.optim.Adam) <= 43
    assert _recorder_kernels(widths, nn.Tanh, sampled=False) <= 10


def test_a_layer_of_its_own_shape_adds_only_its_own_reductions() -> None:
    # Every layer a different width: each output is a group of its own. What a group adds is
    # its reductions (sum per unit, total, norm, alive units, norm of the per-unit sums);
    # adding the sums to the step's rows and counting alive units take a fixed number of
    # kernels for the whole step (they took ~15 more per group before).
    shallow = _recorder_kernels([8, 9, 10, 11, 12], nn.ReLU, sampled=True)
    deep = _recorder_kernels([8, 9, 10, 11, 12, 13, 14, 15, 16], nn.ReLU, sampled=True)
    assert (deep - shallow) / 4 <= 6
