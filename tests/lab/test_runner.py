"""Lab runner: determinism, the run directory, the summary numbers and the remedies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.lab.config import RunConfig
from gradwatch.lab.models import MLP, MLPConfig, RecurrentConfig
from gradwatch.lab.remedies import apply_to_built, remedied_model_config
from gradwatch.lab.runner import grad_rms_ratio, load_result, run
from gradwatch.lab.tasks import AddingConfig, SpiralsConfig

SPIRALS = SpiralsConfig(n_train=200, n_test=100)


def _cfg(**kw: object) -> RunConfig:
    base: dict[str, object] = {
        "model": MLPConfig(depth=3, width=8, activation="tanh"),
        "task": "spirals",
        "task_config": SPIRALS,
        "steps": 12,
        "batch_size": 16,
        "sample_every": 4,
    }
    base.update(kw)
    return RunConfig(**base).validate()  # type: ignore[arg-type]


def test_same_seed_gives_identical_trace(tmp_path: Path) -> None:
    """Two runs of one config record identical gradient traces and losses."""
    a = run(_cfg(), tmp_path / "a")
    b = run(_cfg(), tmp_path / "b")
    ta, tb = gw.load(tmp_path / "a"), gw.load(tmp_path / "b")
    for metric in ("grad_norm", "weight_norm", "act_mean"):
        np.testing.assert_array_equal(ta.matrix(metric), tb.matrix(metric))
    assert a.losses == b.losses and a.test_metric == b.test_metric


def test_other_seed_gives_other_trace() -> None:
    """A different seed changes the initial weights, so the trace differs."""
    a, b = run(_cfg(seed=0)), run(_cfg(seed=1))
    assert a.losses != b.losses


def test_run_dir_is_a_gradwatch_run_with_config_and_result(tmp_path: Path) -> None:
    """The run dir loads with gw.load and also holds the lab config and the result."""
    cfg = _cfg(steps=7)
    result = run(cfg, tmp_path / "r")
    trace = gw.load(tmp_path / "r")
    assert len(trace.steps) == 7 and [layer.type for layer in trace.layers] == ["Linear"] * 3
    saved = json.loads((tmp_path / "r" / "lab_config.json").read_text())
    assert RunConfig.from_dict(saved) == cfg
    assert trace.meta["lab"]["model"]["kind"] == "mlp"
    assert load_result(tmp_path / "r") == result
    np.testing.assert_allclose(trace.scalar("loss"), result.losses, rtol=1e-6)


def test_grad_ratio_matches_trace_recomputation(tmp_path: Path) -> None:
    """grad_ratio is the median over steps of first/last layer grad RMS from the trace."""
    result = run(_cfg(), tmp_path / "r")
    rms = gw.load(tmp_path / "r").matrix("grad_rms")
    assert result.grad_ratio == pytest.approx(float(np.median(rms[:, 0] / rms[:, -1])))
    assert grad_rms_ratio(gw.load(tmp_path / "r")) == pytest.approx(result.grad_ratio)


def test_test_metric_is_accuracy_of_returned_model_on_test_set() -> None:
    """Training lowers the loss, and the metric is an accuracy within [0, 1]."""
    result = run(_cfg(steps=60, optimizer="adam", lr=0.01))
    assert 0.0 <= result.test_metric <= 1.0
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])


def test_clip_norm_bounds_recorded_gradient_norm(tmp_path: Path) -> None:
    """With clip_norm, the clipped global gradient norm never exceeds max_norm, while the
    recorded (pre-clip) one is the unclipped gradient's, as in the run without clipping."""
    clipped = _cfg(remedies=("clip_norm",), remedy_options={"clip_norm": {"max_norm": 0.01}})
    run(clipped, tmp_path / "c")
    run(_cfg(), tmp_path / "u")
    c = gw.load(tmp_path / "c")
    assert np.nanmax(c.scalar("global_grad_norm_clipped")) <= 0.01 * (1 + 1e-5)
    pre = c.scalar("global_grad_norm")
    assert np.nanmax(pre) > 0.01
    # pre-clip x coefficient = post-clip
    np.testing.assert_allclose(
        pre * c.scalar("clip_coef"), c.scalar("global_grad_norm_clipped"), rtol=1e-4
    )
    assert np.nanmax(gw.load(tmp_path / "u").scalar("global_grad_norm")) > 0.01


def test_warm_up_remedy_in_a_lab_run(tmp_path: Path) -> None:
    """remedies = ["lr_warmup"] under Adam warms up over 2 / (1 - beta2) steps by default
    (0.999 -> 2000, longer than the run) or remedy_options.lr_warmup.steps; under SGD without
    steps the config is refused before anything is written, naming the option."""
    run(_cfg(optimizer="adam", lr=0.01, remedies=("lr_warmup",)), tmp_path / "a")
    rates = gw.load(tmp_path / "a").scalar("optimizer_lr")
    np.testing.assert_allclose(rates, 0.01 * (np.arange(12) + 1) / 2000, rtol=1e-5)
    short = {"lr_warmup": {"steps": 4}}
    run(_cfg(lr=0.1, remedies=("lr_warmup",), remedy_options=short), tmp_path / "s")
    rates = gw.load(tmp_path / "s").scalar("optimizer_lr")
    np.testing.assert_allclose(rates, [0.025, 0.05, 0.075] + [0.1] * 9, rtol=1e-6)
    with pytest.raises(ValueError, match="lr_warmup.steps is needed with optimizer='sgd'"):
        run(_cfg(remedies=("lr_warmup",)), tmp_path / "sgd")
    assert not (tmp_path / "sgd").exists()


def test_lower_rate_remedy_in_a_lab_run(tmp_path: Path) -> None:
    """remedies = ["lower_lr"] runs at a tenth of the config's rate by default, or at
    remedy_options.lower_lr.factor; a factor outside (0, 1) fails before anything is
    written, naming it."""
    run(_cfg(lr=0.1, remedies=("lower_lr",)), tmp_path / "d")
    np.testing.assert_allclose(gw.load(tmp_path / "d").scalar("optimizer_lr"), 0.01, rtol=1e-6)
    half = {"lower_lr": {"factor": 0.5}}
    run(_cfg(lr=0.1, remedies=("lower_lr",), remedy_options=half), tmp_path / "h")
    np.testing.assert_allclose(gw.load(tmp_path / "h").scalar("optimizer_lr"), 0.05, rtol=1e-6)
    with pytest.raises(
        ValueError, match=r"remedy_options.lower_lr.factor to be a finite number in"
    ):
        run(
            _cfg(remedies=("lower_lr",), remedy_options={"lower_lr": {"factor": 2}}), tmp_path / "x"
        )
    assert not (tmp_path / "x").exists()


def test_a_model_remedy_is_not_a_training_time_one() -> None:
    from gradwatch.lab.training import train_recorded

    with pytest.raises(ValueError, match="'relu' is not a training-time remedy"):
        train_recorded(
            nn.Linear(2, 1), iter([]), steps=1, optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
            loss_fn=nn.functional.mse_loss, during=[("relu", {})],
        )  # fmt: skip


def test_diverged_run_is_flagged() -> None:
    """A huge learning rate that makes the loss non-finite marks the run diverged."""
    cfg = _cfg(
        model=MLPConfig(depth=3, width=8, activation="relu", init="he"),
        lr=1e6,
        steps=60,
        task="teacher_student",
        task_config=None,
    )
    result = run(cfg)
    assert result.diverged and np.isnan(result.final_loss)


def test_remedies_rewrite_the_model_config() -> None:
    """Structural remedies become config changes, in order."""
    base = MLPConfig(depth=20, activation="sigmoid")
    out = remedied_model_config(base, ("relu", "init_he", "batchnorm", "residual"), {})
    assert out == MLPConfig(depth=20, activation="relu", init="he", norm="batchnorm", residual=True)
    assert remedied_model_config(base, ("reduce_depth",), {}).depth == 5
    assert remedied_model_config(base, ("reduce_depth",), {"reduce_depth": {"depth": 3}}).depth == 3
    rnn = remedied_model_config(RecurrentConfig(), ("lstm", "init_orthogonal"), {})
    assert rnn == RecurrentConfig(cell="lstm", init="orthogonal")


def test_lsuv_gives_unit_output_variance() -> None:
    """After the lab's LSUV (gradwatch.remedies) every hidden Linear's output has variance ~1
    on the batch it was scaled on."""
    net = MLP(MLPConfig(depth=5, width=32, activation="tanh"), 10, 3)
    x = torch.randn(256, 10) * 5
    gen = torch.Generator().manual_seed(0)
    net = apply_to_built(
        net, remedies=("init_lsuv",), options={}, x_train=x, gen=gen, batch_size=256
    )
    h = x
    with torch.no_grad():
        for module in net:
            h = module(h)
            if isinstance(module, nn.Linear) and module is not net[-1]:
                assert abs(float(h.std()) - 1) < 0.05


def test_layerwise_pretraining_trains_hidden_layers_only() -> None:
    """The lab's pretraining (gradwatch.remedies) changes every hidden Linear and leaves the
    head untouched."""
    net = MLP(MLPConfig(depth=4, width=8, activation="sigmoid"), 6, 2)
    before = [m.weight.clone() for m in net if isinstance(m, nn.Linear)]
    x = torch.randn(128, 6)
    out = apply_to_built(
        net,
        remedies=("layerwise_pretraining",),
        options={"layerwise_pretraining": {"steps_per_layer": 30}},
        x_train=x,
        gen=torch.Generator().manual_seed(0),
        batch_size=64,
    )
    after = [m.weight for m in out.modules() if isinstance(m, nn.Linear)]
    assert all(not torch.equal(b, a) for b, a in zip(before[:-1], after[:-1], strict=True))
    assert torch.equal(before[-1], after[-1])


def test_clip_remedies_become_library_clippers(tmp_path: Path) -> None:
    """A clip remedy is a gradwatch.remedies GradientClipper: its clip coefficient is logged
    every step (below 1: it clipped), and the recorder sees the clipped gradients."""
    cfg = _cfg(remedies=("clip_norm",), remedy_options={"clip_norm": {"max_norm": 0.01}})
    trace = gw.load(run(cfg, tmp_path / "c").run_dir)  # type: ignore[arg-type]
    coef = trace.scalar("clip_coef")
    assert len(coef) == cfg.steps and np.all(coef < 1.0)
    assert np.nanmax(trace.scalar("global_grad_norm_clipped")) <= 0.01 * (1 + 1e-5)


def test_recurrent_run_on_adding() -> None:
    """A recurrent config runs end to end on the adding problem (MSE metric)."""
    cfg = RunConfig(
        model=RecurrentConfig(cell="gru", hidden=8),
        task="adding",
        task_config=AddingConfig(seq_len=6, n_train=64, n_test=32),
        steps=5,
        batch_size=16,
    )
    result = run(cfg)
    assert result.metric == "mse" and np.isfinite(result.test_metric)
