"""Bad ``gw.watch`` arguments are refused before anything is attached or written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import gradwatch as gw

from ._helpers import train


def _model_and_opt() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def _nothing_left(model: nn.Module, opt: torch.optim.Optimizer, run: Path) -> None:
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
    assert not run.exists()


BAD: dict[str, tuple[dict[str, Any], type[Exception], str]] = {
    "scaler object": ({"scaler": object()}, TypeError, r"`scaler`.*GradScaler.*got object"),
    "scaler class": (
        {"scaler": torch.amp.GradScaler}, TypeError, r"`scaler`.*the class .*GradScaler itself"
    ),
    "meta reserved key": ({"meta": {"config": {"lr": 1}}}, ValueError, r"`meta`.*'config'"),
    "meta format_version": ({"meta": {"format_version": 2}}, ValueError, "'format_version'"),
    "meta not a dict": ({"meta": ["a"]}, TypeError, r"`meta`.*list"),
    "meta int key": ({"meta": {1: "a"}}, TypeError, r"keys of argument `meta`"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_argument_leaves_no_hook_and_no_run_dir(case: str, tmp_path: Path) -> None:
    kwargs, error, words = BAD[case]
    model, opt = _model_and_opt()
    run = tmp_path / "run"
    with pytest.raises(error, match=words):
        gw.watch(model, opt, run, **kwargs)
    _nothing_left(model, opt, run)


def test_scaler_class_is_never_patched(tmp_path: Path) -> None:
    """Passing the class used to succeed, and close() then deleted GradScaler.step."""
    step = torch.amp.GradScaler.__dict__["step"]
    model, opt = _model_and_opt()
    with pytest.raises(TypeError):
        gw.watch(model, opt, scaler=torch.amp.GradScaler)
    assert torch.amp.GradScaler.__dict__["step"] is step


def test_scaler_needs_the_optimizer() -> None:
    model, _ = _model_and_opt()
    with pytest.raises(ValueError, match=r"`scaler` needs the `optimizer`"):
        gw.watch(model, scaler=torch.amp.GradScaler("cpu", enabled=False))


def test_a_real_scaler_is_wrapped_then_restored(tmp_path: Path) -> None:
    model, opt = _model_and_opt()
    scaler = torch.amp.GradScaler("cpu")
    with gw.watch(model, opt, tmp_path / "run", scaler=scaler) as w:
        assert "step" in vars(scaler)
        for _ in range(3):
            loss = model(torch.randn(8, 4)).pow(2).mean()
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    assert "step" not in vars(scaler) and w.num_steps == 3
    assert torch.amp.GradScaler.__dict__["step"] is type(scaler).__dict__["step"]


def test_run_dir_that_cannot_be_written_at_watch_leaves_nothing(tmp_path: Path) -> None:
    """A run_dir under a regular file: one OSError naming it, no hook, nothing created."""
    (tmp_path / "file").write_text("x")
    model, opt = _model_and_opt()
    run = tmp_path / "file" / "run"
    with pytest.raises(OSError, match=r"cannot create run directory .*file/run"):
        gw.watch(model, opt, run)
    assert not opt._optimizer_step_pre_hooks


def test_user_meta_is_kept_apart_and_report_reads_it(tmp_path: Path) -> None:
    """User keys sit beside gradwatch's, never over them, and every reader copes with them."""
    from gradwatch.cli.main import main

    run = tmp_path / "run"
    train(run, 12, meta={"model_name": "resnet50", "user": {"lr": 0.1}, "tags": ["a", 1]})
    trace = gw.load(run)
    assert trace.meta["model_name"] == "resnet50" and trace.meta["tags"] == ["a", 1]
    assert trace.meta["model"]["class"] == "Sequential"
    assert trace.config["every"] == 1 and trace.meta["status"] == "complete"
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    assert "resnet50" in (tmp_path / "r.html").read_text()
