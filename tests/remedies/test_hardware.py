"""Faster hardware: honest reports, and optimizer state that follows the model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradwatch.remedies import fastest_device, measure_speedup, move_to_device_


@pytest.mark.skipif(
    torch.cuda.is_available() or torch.backends.mps.is_available(), reason="needs a CPU-only host"
)
def test_cpu_only_reports_no_accelerator_and_moves_nothing() -> None:
    """Without CUDA/MPS: speed-up 1.0, nothing moved, nothing timed, and it says why."""
    model = nn.Linear(4, 2)
    calls: list[torch.device] = []
    report = measure_speedup(model, calls.append)
    assert fastest_device().type == "cpu"
    assert not report.moved and report.speedup == 1.0 and calls == []
    assert math.isnan(report.step_s_before)
    assert "no accelerator" in report.message


def test_move_carries_optimizer_state_but_keeps_step_counters_on_cpu() -> None:
    """Adam's exp_avg buffers follow the model to the device; its 'step' stays on the CPU
    (torch's own rule for non-capturable optimizers). The 'meta' device stands in for a GPU."""
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    dev = move_to_device_(model, opt, "meta")
    assert dev.type == "meta" and model.weight.device.type == "meta"
    state = opt.state[model.weight]
    assert state["exp_avg"].device.type == "meta" and state["exp_avg_sq"].device.type == "meta"
    assert state["step"].device.type == "cpu"


def test_measured_speedup_is_the_ratio_of_mean_step_times() -> None:
    """When moving, both devices are timed on the step function and speedup = before / after."""
    model = nn.Linear(3, 2)
    seen: list[str] = []

    def step(device: torch.device) -> None:
        seen.append(device.type)
        model(torch.randn(4, 3, device=device)).sum()

    report = measure_speedup(model, step, steps=2, warmup=1, device="meta")
    assert report.moved and seen == ["cpu"] * 3 + ["meta"] * 3
    assert report.speedup == pytest.approx(report.step_s_before / report.step_s_after)
    assert report.device_after == "meta"


def test_optimizer_follows_when_the_move_replaces_parameter_objects() -> None:
    """Moving to 'meta' makes new Parameter objects: the optimizer's groups and state follow."""
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    move_to_device_(model, opt, "meta")
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in model.parameters()]
    assert opt.state[model.bias]["momentum_buffer"].device.type == "meta"
