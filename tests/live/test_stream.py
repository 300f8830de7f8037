"""Streaming: TensorBoard and wandb receive the per-layer scalars at each flush."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradwatch as gw
from gradwatch.live import STREAM_METRICS, WandbStream
from gradwatch.live import online as online_mod
from gradwatch.report import export_tensorboard

from ._helpers import deep_sigmoid, train

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _every_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(online_mod, "MAX_SHARE", 0.0)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def _accumulator(logdir: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_stream_matches_the_export_in_depth_order(tmp_path: Path) -> None:
    """Streamed tags sort in depth order, are the export's tags, and hold the same values."""
    pytest.importorskip("tensorboard")
    model, opt = deep_sigmoid(depth=11)  # 12 layers: depths 0-11, two digits
    run, live_tb, export_tb = tmp_path / "run", tmp_path / "live", tmp_path / "export"
    with gw.watch(
        model, opt, run, flush_every=15, on_finding=lambda f: None, tensorboard=live_tb
    ) as w:
        train(w, model, opt, 40)
    live = _accumulator(live_tb)
    exported = _accumulator(export_tensorboard(run, export_tb, histograms=False))
    trace = gw.load(run)
    tags = live.Tags()["scalars"]
    grad = sorted(t for t in tags if t.startswith("grad_rms/"))
    # Text order is depth order: L00 ... L11, each with its module name.
    assert grad == [f"grad_rms/L{i:02d} {name}" for i, name in enumerate(trace.layer_names)]
    # Sigmoid units cannot be dead (act_dead is not measured for them): the rest is there.
    assert {t.split("/")[0] for t in tags} == {*STREAM_METRICS, "global_grad_norm"} - {"act_dead"}
    assert set(tags) <= set(exported.Tags()["scalars"])
    # Per-layer values at the sampled steps (each of the first dense_steps=20, then every
    # sample_every=10th), the scalars at every step; each value is the export's.
    sampled = [*range(20), 20, 30]
    for tag in tags:
        a = [(e.step, e.value) for e in live.Scalars(tag)]
        b = {e.step: e.value for e in exported.Scalars(tag)}
        assert a == [(step, b[step]) for step, _ in a], tag
        want_steps = list(range(40)) if tag == "global_grad_norm" else sampled
        if not tag.startswith("update_ratio/"):  # (no update ratio at step 0's first forward)
            assert [step for step, _ in a] == [s for s in want_steps if s in b], tag
    # Independent of both writers: the trace itself.
    want = trace.matrix("grad_rms")[sampled, 3]
    got = [e.value for e in live.Scalars(grad[3])]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # The findings as text, at each check.
    texts = live.Tensors("gradwatch/findings/text_summary")
    assert [e.step for e in texts] == [15, 30, 40]
    assert b"vanishing_gradient" in texts[-1].tensor_proto.string_val[0]


def test_tensorboard_accepts_a_summary_writer_and_leaves_it_open(tmp_path: Path) -> None:
    """Your own SummaryWriter is written to and not closed (you keep logging to it)."""
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    model, opt = deep_sigmoid(depth=3)
    with gw.watch(model, opt, flush_every=10, on_finding=lambda f: None, tensorboard=writer) as w:
        train(w, model, opt, 20)
    writer.add_scalar("loss", 1.0, 20)  # still open
    writer.close()
    tags = _accumulator(tmp_path / "tb").Tags()["scalars"]
    assert "grad_rms/L00 0" in tags and "loss" in tags


class _FakeRun:
    """A stand-in for a wandb run: records what is logged and defined."""

    def __init__(self) -> None:
        self.logged: list[dict[str, Any]] = []
        self.defined: list[tuple[str, str | None]] = []

    def log(self, data: dict[str, Any]) -> None:
        self.logged.append(dict(data))

    def define_metric(self, name: str, step_metric: str | None = None) -> None:
        self.defined.append((name, step_metric))


def test_wandb_stream_logs_every_layer_on_its_own_step_axis(tmp_path: Path) -> None:
    """run.log gets one dict per step: gradwatch/step and the export's tags and values."""
    run = _FakeRun()
    model, opt = deep_sigmoid(depth=3)
    with gw.watch(
        model, opt, tmp_path / "run", flush_every=10, on_finding=lambda f: None, wandb=run
    ) as w:
        train(w, model, opt, 25)
    trace = gw.load(tmp_path / "run")
    rows = [r for r in run.logged if "gradwatch/findings" not in r]
    assert [r["gradwatch/step"] for r in rows] == list(range(25))  # global_grad_norm: all
    names = trace.layer_names
    with_layers = [r for r in rows if f"grad_rms/L00 {names[0]}" in r]
    assert [r["gradwatch/step"] for r in with_layers] == [*range(20), 20]  # sampled steps
    for r in with_layers:
        step = r["gradwatch/step"]
        for j, name in enumerate(names):
            assert r[f"grad_rms/L{j:02d} {name}"] == pytest.approx(
                trace.matrix("grad_rms")[step, j], rel=1e-6
            )
    assert ("grad_rms/*", "gradwatch/step") in run.defined
    findings = [r for r in run.logged if "gradwatch/findings" in r]
    assert [r["gradwatch/step"] for r in findings] == [10, 20, 25]


def test_wandb_offline_run(tmp_path: Path) -> None:
    """A real offline wandb run takes the stream; its summary holds the last values."""
    wandb = pytest.importorskip("wandb")
    run = wandb.init(mode="offline", dir=str(tmp_path), project="gradwatch-test")
    try:
        model, opt = deep_sigmoid(depth=3)
        with gw.watch(
            model, opt, tmp_path / "run", flush_every=10, on_finding=lambda f: None, wandb=run
        ) as w:
            train(w, model, opt, 20)
        trace = gw.load(tmp_path / "run")
        summary = dict(run.summary)
    finally:
        run.finish()
    name = trace.layer_names[1]
    assert summary["gradwatch/step"] == 20  # the findings at close, after 20 steps
    assert summary[f"grad_rms/L01 {name}"] == pytest.approx(
        trace.matrix("grad_rms")[-1, 1], rel=1e-6
    )
    assert list(Path(tmp_path, "wandb").glob("offline-run-*/run-*.wandb"))


def test_wandb_stream_refuses_an_object_without_log() -> None:
    """wandb= must be a run: the error says what to pass."""
    with pytest.raises(TypeError, match="`wandb`.*wandb.init"):
        WandbStream(object())
