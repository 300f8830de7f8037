"""The Lightning callback records step k's gradients at step k (automatic and manual
optimisation, gradient accumulation, clipping), its activations and losses, and leaves no hook."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradwatch as gw

from ._reference import (
    ActivationReference,
    assert_norms_match,
    assert_sampled_act_means_match,
    gradwatch_hooks,
    layer_norms,
)

pl = pytest.importorskip("pytorch_lightning")
from gradwatch.integrations.lightning import GradwatchCallback  # noqa: E402


class Net(pl.LightningModule):  # type: ignore[misc,name-defined]
    """A small tanh MLP; manual optimisation steps every ``accumulate`` batches."""

    def __init__(self, manual: bool = False, accumulate: int = 1, fail_at: int = -1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)
        )
        self.automatic_optimization = not manual
        self.accumulate = accumulate
        self.fail_at = fail_at
        self.losses: list[float] = []

    def training_step(self, batch: Any, idx: int) -> torch.Tensor:
        if idx == self.fail_at:
            raise RuntimeError("boom")
        x, y = batch
        loss = F.mse_loss(self.net(x), y)
        self.losses.append(loss.item())
        if not self.automatic_optimization:
            opt = self.optimizers()
            self.manual_backward(loss / self.accumulate)
            if (idx + 1) % self.accumulate == 0:
                opt.step()
                opt.zero_grad()
        return loss

    def validation_step(self, batch: Any, idx: int) -> None:
        self.net(batch[0] * 5)  # a forward whose activations must not enter the recording

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


class Reference(pl.Callback):  # type: ignore[misc,name-defined]
    """Per-layer gradient norms in on_before_optimizer_step (before Lightning clips)."""

    def __init__(self, model: Net) -> None:
        self.norms: list[dict[str, float]] = []
        tanhs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Tanh)}
        self.acts = ActivationReference(tanhs)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self.norms.append(layer_norms(pl_module))
        self.acts.step += 1


def _loader(n: int = 48, seed: int = 0) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = x[:, :1] * 2 + 0.1 * torch.randn(n, 1, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def _trainer(tmp_path: Path, callbacks: list[Any], **kwargs: Any) -> Any:
    return pl.Trainer(
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        callbacks=callbacks,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("manual", "accumulate", "clip"),
    [(False, 1, None), (False, 3, None), (False, 1, 0.05), (True, 1, None), (True, 2, None)],
    ids=["automatic", "automatic-accumulate", "automatic-clip", "manual", "manual-accumulate"],
)
def test_gradients_activations_and_loss_are_those_of_the_same_step(
    tmp_path: Path, manual: bool, accumulate: int, clip: float | None, clip_restored: None
) -> None:
    """Each recorded row k holds step k's pre-clip gradient norms (the framework's own hook's),
    step k's activation means on sampled steps (validation forwards left out), and the mean
    loss of step k's batches."""
    torch.manual_seed(0)
    model = Net(manual=manual, accumulate=accumulate)
    ref = Reference(model)
    cb = GradwatchCallback(tmp_path / "run", sample_every=3, dense_steps=2, overhead=None)
    kwargs: dict[str, Any] = {"max_steps": 8, "val_check_interval": 3, "limit_val_batches": 1}
    if not manual:
        kwargs.update(accumulate_grad_batches=accumulate, gradient_clip_val=clip)
    trainer = _trainer(tmp_path, [cb, ref], **kwargs)
    trainer.fit(model, _loader(), _loader(16, seed=1))
    ref.acts.remove()

    trace = gw.load(tmp_path / "run")
    assert len(ref.norms) == 8 and trace.steps.tolist() == list(range(8))
    assert_norms_match(trace, ref.norms)
    assert not np.isnan(trace.matrix("grad_norm")).any()
    # Activations: sampled steps 0, 1, 3, 6 hold step k's means; the others are missing.
    assert_sampled_act_means_match(trace, ref.acts, 8, sampled=(0, 1, 3, 6))
    assert not np.isnan(trace.matrix("update_ratio")[[0, 1, 3, 6]]).any()
    # Loss: the mean of the training_step losses of each step's batches.
    per_step = np.asarray(model.losses).reshape(8, accumulate).mean(axis=1)
    np.testing.assert_allclose(trace.scalar("loss"), per_step, rtol=1e-5)
    assert gradwatch_hooks(model, trainer.optimizers[0]) == 0
    # Lightning zeroes the gradients each step: the pair of steps 0-1 compared, none kept.
    assert trace.meta["config"]["grad_zeroing"] == {"checked": 1, "kept": 0, "first_kept": None}
    assert not [f for f in gw.diagnose(trace) if f.evidence.get("never_zeroed")]
    # The loss's graph, handed over before backward (the logged losses are detached): read.
    assert trace.meta["config"]["loss_graph"]["checked"] == 3
    assert trace.meta["config"]["loss_graph"]["mismatched"] == 0


class SoftmaxClassifier(Net):
    """The MLP with 3 outputs through an nn.Softmax, trained with cross_entropy."""

    def __init__(self, manual: bool) -> None:
        super().__init__(manual=manual)
        self.net[-1] = nn.Linear(16, 3)
        self.net.append(nn.Softmax(-1))

    def training_step(self, batch: Any, idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.net(x), (y[:, 0] > 0).long() + (y[:, 0] > 1).long())
        if not self.automatic_optimization:
            self.manual_backward(loss)
            self.optimizers().step()
            self.optimizers().zero_grad()
        return loss


@pytest.mark.parametrize("manual", [False, True], ids=["automatic", "manual"])
def test_a_softmax_before_cross_entropy_is_read_from_the_loss_before_backward(
    tmp_path: Path, manual: bool
) -> None:
    """on_before_backward hands the watch the loss with its graph, under automatic and manual
    optimisation: the squash is recorded and the diagnosis says it. Under manual
    optimisation the loss logged (training_step's) need not be the one backward ran from (a
    user who divides it for accumulation by hand returns it undivided): its multiple of the
    mean is unknown, so the hot start reads nothing there."""
    torch.manual_seed(0)
    cb = GradwatchCallback(tmp_path / "run", overhead=None)
    _trainer(tmp_path, [cb], max_steps=6).fit(SoftmaxClassifier(manual), _loader())
    trace = gw.load(tmp_path / "run")
    assert trace.meta["config"]["loss_graph"] == {
        "checked": 3, "mismatched": 3, "loss": "cross_entropy", "given": "softmax",
        "first_step": 0, "kind": "cross_entropy", "classes": 3,
        "multiple": None if manual else 1.0,
    }  # fmt: skip
    d = gw.diagnose(trace)
    said = list(d.notes) + [f.message for f in d]
    assert any("applies log-softmax itself" in text for text in said)


def test_default_run_dir_is_under_the_trainer_log_dir(tmp_path: Path) -> None:
    """Without run_dir the run goes to <default_root_dir>/gradwatch, complete, with the trainer
    step it started from in its metadata."""
    cb = GradwatchCallback()
    _trainer(tmp_path, [cb], max_steps=3).fit(Net(), _loader())
    meta = json.loads((tmp_path / "gradwatch" / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["steps_recorded"] == 3
    assert meta["trainer"] == {"framework": "lightning", "global_step_at_start": 0}


def test_default_run_dir_follows_the_logger_version_dir(tmp_path: Path) -> None:
    """With a logger, the run goes to the logger's version directory (trainer.log_dir)."""
    logger = pl.loggers.CSVLogger(tmp_path / "logs")
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        max_steps=2,
        callbacks=[GradwatchCallback()],
    )
    trainer.fit(Net(), _loader())
    assert trainer.log_dir is not None
    assert len(gw.load(Path(trainer.log_dir) / "gradwatch")) == 2
    assert Path(trainer.log_dir).parent.parent == tmp_path / "logs"


def test_exception_mid_fit_closes_the_watch(tmp_path: Path, clip_restored: None) -> None:
    """A training_step that raises at batch 4: no hook stays attached and the run is marked
    failed with the steps taken before it."""
    model = Net(fail_at=4)
    cb = GradwatchCallback(tmp_path / "run")
    trainer = _trainer(tmp_path, [cb], max_steps=10, gradient_clip_val=1.0)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(model, _loader())
    assert gradwatch_hooks(model, trainer.optimizers[0]) == 0
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["status"] == "failed"
    assert len(gw.load(tmp_path / "run")) == 4


class _StopAt(pl.Callback):  # type: ignore[misc,name-defined]
    def __init__(self, cb: GradwatchCallback, step: int) -> None:
        self.cb, self.step = cb, step

    def on_train_batch_start(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step == self.step and self.cb.watch is not None:
            self.cb.watch.should_stop = True  # what a live on_finding="stop" sets


def test_should_stop_stops_the_trainer(tmp_path: Path) -> None:
    """When the watch asks to stop, the trainer ends after that step."""
    cb = GradwatchCallback(tmp_path / "run")
    trainer = _trainer(tmp_path, [cb, _StopAt(cb, 3)], max_steps=20)
    trainer.fit(Net(), _loader())
    assert trainer.global_step == 4
    assert len(gw.load(tmp_path / "run")) == 4


class _Exploding(Net):
    def training_step(self, batch: Any, idx: int) -> torch.Tensor:
        loss = super().training_step(batch, idx)
        return loss * float("inf") if idx >= 2 else loss  # non-finite gradients from step 2


def test_critical_findings_are_warned_at_the_end(tmp_path: Path) -> None:
    """Non-finite gradients end in a rank-zero warning that names the rule."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _trainer(tmp_path, [GradwatchCallback(tmp_path / "run")], max_steps=5).fit(
            _Exploding(), _loader()
        )
    messages = [str(w.message) for w in caught]
    assert any("gradwatch found nonfinite_gradient" in m for m in messages), messages


def test_unknown_watch_option_is_refused_at_construction() -> None:
    """A misspelt gw.watch option fails when the callback is built, naming it."""
    with pytest.raises(TypeError, match="sample_evry"):
        GradwatchCallback(sample_evry=5)
    with pytest.raises(TypeError, match="optimizer"):
        GradwatchCallback(optimizer=None)


def test_live_stop_on_a_nonfinite_gradient_ends_the_fit_early(tmp_path: Path) -> None:
    """on_finding="stop": gradients go non-finite at step 2, the live check at the next flush
    (every 4 steps) asks to stop, and Lightning ends the fit there, the run dir complete."""
    cb = GradwatchCallback(tmp_path / "run", flush_every=4, on_finding="stop")
    trainer = _trainer(tmp_path, [cb], max_steps=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(_Exploding(), _loader(n=400))
    assert trainer.global_step <= 8, trainer.global_step  # stopped within one flush
    trace = gw.load(tmp_path / "run")
    assert trace.meta["status"] == "complete" and len(trace) == trainer.global_step
    live = [
        json.loads(line) for line in (tmp_path / "run" / "findings.jsonl").read_text().splitlines()
    ]
    assert any(f["rule"] == "nonfinite_gradient" for f in live)


class FusedNet(Net):
    """Fused AdamW (it unscales in its own kernel) and an inf gradient at step ``poison_at``."""

    def __init__(self, poison_at: int) -> None:
        super().__init__()
        self.seen = 0
        self.net[2].weight.register_hook(
            lambda g: g * float("inf") if self.seen == poison_at else g
        )

    def training_step(self, batch: Any, idx: int) -> torch.Tensor:
        self.seen = idx
        return super().training_step(batch, idx)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-2, fused=True)


class ScaledReference(Reference):
    """The gradient norms of each step and the loss scale they carry (Lightning does not
    unscale for an optimizer that unscales itself)."""

    def __init__(self, model: Net) -> None:
        super().__init__(model)
        self.scales: list[float] = []

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        super().on_before_optimizer_step(trainer, pl_module, optimizer)
        self.scales.append(trainer.precision_plugin.scaler.get_scale())


def test_16_mixed_with_a_fused_optimizer_records_unscaled_gradients_and_skips(
    tmp_path: Path,
) -> None:
    """Under 16-mixed the callback hands the precision plugin's GradScaler to the watch: a
    fused optimizer's gradients, which still carry the loss scale, are recorded unscaled, and
    the step the scaler skips (an inf at step 2) is recorded as skipped at that step."""
    from pytorch_lightning.plugins import MixedPrecision

    torch.manual_seed(0)
    model = FusedNet(poison_at=2)
    ref = ScaledReference(model)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    cb = GradwatchCallback(tmp_path / "run", overhead=None)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    _trainer(tmp_path, [cb, ref], max_steps=5, plugins=[plugin]).fit(model, _loader())
    assert cb.watch is not None and cb.watch.scaler is scaler
    trace = gw.load(tmp_path / "run")
    assert ref.scales == [1024.0, 1024.0, 1024.0, 512.0, 512.0]  # halved by the skip
    unscaled = [
        {k: v / s for k, v in norms.items()} for norms, s in zip(ref.norms, ref.scales, strict=True)
    ]
    assert_norms_match(trace, unscaled)  # (step 2: inf in both)
    assert trace.skipped_steps() == {2: ["L1 net.2"]}
    finding = next(f for f in gw.diagnose(trace) if f.rule == "nonfinite_gradient")
    assert finding.severity != "critical"


def test_the_loss_divided_for_accumulation_reads_as_the_mean_it_is_logged_as(
    tmp_path: Path,
) -> None:
    """Lightning divides the loss backward runs from by accumulate_grad_batches; the step's
    logged loss undoes it, so the graph's loss, scaled back, is the mean (the hot start of
    diagnosis/trained_start.py reads the logged loss against log C only then)."""
    torch.manual_seed(0)
    cb = GradwatchCallback(tmp_path / "run", overhead=None)
    trainer = _trainer(tmp_path, [cb], max_steps=3, accumulate_grad_batches=2)
    trainer.fit(SoftmaxClassifier(manual=False), _loader())
    graph = gw.load(tmp_path / "run").meta["config"]["loss_graph"]
    assert graph["multiple"] == 1.0


class LBFGSNet(Net):
    """The MLP under LBFGS, whose step calls Lightning's closure (training_step, backward,
    on_before_optimizer_step) up to ``max_iter`` times."""

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.LBFGS(self.parameters(), lr=0.1, max_iter=3)


class FirstEvaluation(pl.Callback):  # type: ignore[misc,name-defined]
    """Per optimizer step, the gradient norms and tanh outputs of its closure's first call
    (LBFGS calls it again at trial points: those are not the step's)."""

    def __init__(self, model: Net) -> None:
        self.norms: list[dict[str, float]] = []
        self.evaluations = 0
        self.calls: list[int] = []
        tanhs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Tanh)}
        self.acts = ActivationReference(tanhs)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, idx: int) -> None:
        self.calls.append(0)
        self.acts.step = len(self.norms)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self.calls[-1] += 1
        if self.calls[-1] == 1:
            self.norms.append(layer_norms(pl_module))
            self.acts.step = -1  # the later calls' forwards


def test_lbfgs_records_one_step_per_optimizer_step_from_its_first_evaluation(
    tmp_path: Path,
) -> None:
    """LBFGS calls Lightning's closure, and with it on_before_optimizer_step, several times
    in one optimizer step: each step is recorded once (none skipped), with the gradients and
    activations of its first call."""
    torch.manual_seed(0)
    model = LBFGSNet()
    ref = FirstEvaluation(model)
    cb = GradwatchCallback(tmp_path / "run", sample_every=1, overhead=None)
    trainer = _trainer(tmp_path, [cb, ref], max_steps=4)
    trainer.fit(model, _loader())
    ref.acts.remove()
    assert max(ref.calls) > 1  # the test means something: LBFGS evaluated again
    trace = gw.load(tmp_path / "run")
    assert trace.steps.tolist() == [0, 1, 2, 3]
    assert not trace.scalar("skipped").any()
    assert_norms_match(trace, ref.norms)
    assert_sampled_act_means_match(trace, ref.acts, 4, sampled=(0, 1, 2, 3))
    assert gradwatch_hooks(model, trainer.optimizers[0]) == 0
