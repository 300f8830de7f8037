"""The Hugging Face callback records each optimizer step's gradients (with gradient
accumulation and clipping), its activations, HF's logged loss and learning rate, and stops
and cleans up when asked."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw

from ._reference import (
    ActivationReference,
    assert_norms_match,
    assert_sampled_act_means_match,
    gradwatch_hooks,
    layer_norms,
    tiny_bert,
)

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from gradwatch.integrations.transformers import GradwatchCallback  # noqa: E402


class Regressor(nn.Module):
    """A tanh MLP with the Trainer's calling convention: keyword inputs, a dict with the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)
        )
        self.losses: list[float] = []

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(x)
        loss = nn.functional.mse_loss(out, labels)
        # (gradwatch traces the model once with torch.fx: that call's loss is not a tensor)
        if self.training and torch.is_grad_enabled() and isinstance(loss, torch.Tensor):
            self.losses.append(loss.item())
        return {"loss": loss, "logits": out}


class Exploding(Regressor):
    """Its loss, hence every gradient, is non-finite from the fourth forward on."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward(x, labels)
        if len(self.losses) > 2:
            out["loss"] = out["loss"] * float("inf")
        return out


def _data(n: int = 48, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = x[:, :1] * 2 + 0.1 * torch.randn(n, 1, generator=g)
    return [{"x": x[i], "labels": y[i]} for i in range(n)]


class Reference(transformers.TrainerCallback):  # type: ignore[misc]
    """Per-layer norms of the gradients the optimizer is about to apply, and HF's logs."""

    def __init__(self, model: nn.Module) -> None:
        self.norms: list[dict[str, float]] = []
        self.logs: list[tuple[int, dict[str, Any]]] = []
        tanhs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Tanh)}
        self.acts = ActivationReference(tanhs)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.norms.append(layer_norms(kw["model"]))
        self.acts.step += 1

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        self.logs.append((state.global_step, dict(logs or {})))


def _args(tmp_path: Path, **kwargs: Any) -> Any:
    base: dict[str, Any] = {
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 8,
        "learning_rate": 0.05,
        "lr_scheduler_type": "linear",
        "logging_steps": 1,
        "report_to": [],
        "use_cpu": True,
        "save_strategy": "no",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "seed": 0,
    }
    base.update(kwargs)
    return transformers.TrainingArguments(**base)


def _train_with_evaluation(
    tmp_path: Path, model: nn.Module, callbacks: list[Any], **args: Any
) -> Any:
    """A Trainer run on ``_data()`` with evaluations on other data between its steps."""
    trainer = transformers.Trainer(
        model=model,
        args=_args(tmp_path, eval_strategy="steps", **args),
        train_dataset=_data(),
        eval_dataset=_data(16, seed=1),
        callbacks=callbacks,
    )
    trainer.train()
    return trainer


@pytest.mark.parametrize("accumulate", [1, 3])
def test_each_step_records_the_gradients_the_optimizer_applies(
    tmp_path: Path, accumulate: int, clip_restored: None
) -> None:
    """Row k holds the gradient norms HF's on_pre_optimizer_step sees at step k (accumulated
    over the cycle), step k's activation means on sampled steps (evaluation forwards left
    out), step k's loss as HF logs it, the learning rate HF logged at step k and the one
    step k used."""
    torch.manual_seed(0)
    model = Regressor()
    ref = Reference(model)
    cb = GradwatchCallback(tmp_path / "run", sample_every=3, dense_steps=2, overhead=None)
    trainer = _train_with_evaluation(
        tmp_path,
        model,
        [cb, ref],
        max_steps=7,
        max_grad_norm=0.0,
        gradient_accumulation_steps=accumulate,
        eval_steps=3,
    )
    ref.acts.remove()

    trace = gw.load(tmp_path / "run")
    assert len(ref.norms) == 7 and trace.steps.tolist() == list(range(7))
    assert_norms_match(trace, ref.norms)
    assert_sampled_act_means_match(trace, ref.acts, 7, sampled=(0, 1, 3, 6))
    logged = [(s, logs) for s, logs in ref.logs if "loss" in logs]
    assert [s for s, _ in logged] == list(range(1, 8))
    np.testing.assert_allclose(trace.scalar("loss"), [lg["loss"] for _, lg in logged])
    np.testing.assert_allclose(
        trace.scalar("learning_rate"), [lg["learning_rate"] for _, lg in logged]
    )
    # The rate each step used, read from the optimizer: linear decay from 0.05 over 7 steps.
    np.testing.assert_allclose(trace.scalar("optimizer_lr"), 0.05 * (7 - np.arange(7)) / 7)
    # HF rounds its logged loss; the model's own losses, pooled per step, agree to that.
    per_step = np.asarray(model.losses).reshape(7, accumulate).mean(axis=1)
    np.testing.assert_allclose(trace.scalar("loss"), per_step, atol=2e-4)
    assert gradwatch_hooks(model, trainer.optimizer.optimizer) == 0
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["config"]["optimizer"] == (
        "AdamW"
    )
    gw.diagnose(trace)


def test_every_step_has_its_loss_whatever_logging_steps(tmp_path: Path) -> None:
    """With HF's default logging_steps (500) HF logs no loss in a 6-step run; the trace still
    has each step's loss, the mean of its micro-batches' model losses (evaluation forwards
    in between left out), exactly; no learning rate was logged."""
    torch.manual_seed(0)
    model = Regressor()
    trainer = _train_with_evaluation(
        tmp_path,
        model,
        [GradwatchCallback(tmp_path / "run", overhead=None)],
        max_steps=6,
        logging_steps=500,
        gradient_accumulation_steps=2,
        eval_steps=2,
    )
    trace = gw.load(tmp_path / "run")
    assert trace.steps.tolist() == list(range(6))
    per_step = np.asarray(model.losses).reshape(6, 2).mean(axis=1)
    np.testing.assert_allclose(trace.scalar("loss"), per_step, rtol=1e-6)
    assert not trace.has_scalar("learning_rate")
    assert gradwatch_hooks(model, trainer.optimizer.optimizer) == 0


def test_a_skipped_optimizer_step_s_loss_is_not_recorded(tmp_path: Path) -> None:
    """A step whose optimizer step never ran (as accelerate's GradScaler skips one on
    overflow) has no row: its loss is dropped, not written over the previous step's."""
    torch.manual_seed(0)
    model = Regressor()

    class SkipStep2(transformers.TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == 2:
                opt = kw["optimizer"]
                opt.step = lambda *a, **k: opt.__dict__.pop("step")  # skip once, then restore

    trainer = transformers.Trainer(
        model=model,
        args=_args(tmp_path, max_steps=5, logging_steps=500),
        train_dataset=_data(),
        callbacks=[GradwatchCallback(tmp_path / "run", overhead=None), SkipStep2()],
    )
    trainer.train()
    trace = gw.load(tmp_path / "run")
    assert len(model.losses) == 5 and trace.steps.tolist() == list(range(4))
    taken = [model.losses[k] for k in (0, 1, 3, 4)]
    np.testing.assert_allclose(trace.scalar("loss"), taken, rtol=1e-6)


def _tiny_gpt2() -> nn.Module:
    config = transformers.GPT2Config(
        vocab_size=64, n_positions=16, n_embd=16, n_layer=2, n_head=2, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def _lm_data(n: int = 48) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 64, (n, 12), generator=g)
    # Some label positions ignored (-100), so micro-batches count different numbers of tokens.
    labels = torch.where(torch.rand(n, 12, generator=g) < 0.3, -100, ids)
    return [{"input_ids": ids[i], "labels": labels[i]} for i in range(n)]


@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_language_model_normalised_over_the_accumulated_batch_logs_hf_s_loss(
    tmp_path: Path, accumulate: int
) -> None:
    """GPT-2 takes ``num_items_in_batch``, so each micro-batch's loss is its share of the
    accumulated batch's token mean: the step's loss is their sum, which equals the loss HF
    logs at every step (logging_steps=1)."""
    torch.manual_seed(0)
    ref = Reference(nn.Sequential())
    trainer = transformers.Trainer(
        model=_tiny_gpt2(),
        args=_args(
            tmp_path,
            max_steps=5,
            per_device_train_batch_size=4,
            gradient_accumulation_steps=accumulate,
            learning_rate=1e-3,
        ),
        train_dataset=_lm_data(),
        callbacks=[GradwatchCallback(tmp_path / "run", overhead=None), ref],
    )
    assert trainer.model_accepts_loss_kwargs  # the path this test is about
    trainer.train()
    hf = [logs["loss"] for _, logs in ref.logs if "loss" in logs]
    assert len(hf) == 5
    np.testing.assert_allclose(gw.load(tmp_path / "run").scalar("loss"), hf, rtol=1e-5)


class NllOfLogits(nn.Module):
    """A classifier with the Trainer's calling convention whose loss is nll_loss of its raw
    logits (no log_softmax): the mistake the loss's graph shows."""

    def __init__(self, log_softmax: bool) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
        self.log_softmax = log_softmax

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(x)
        scores = out.log_softmax(-1) if self.log_softmax else out
        return {"loss": nn.functional.nll_loss(scores, labels), "logits": out}


@pytest.mark.parametrize("log_softmax", [False, True], ids=["raw_logits", "log_softmax"])
def test_the_model_s_own_loss_graph_is_read(tmp_path: Path, log_softmax: bool) -> None:
    """The Trainer hands its callbacks no loss: the graph is read from the model's output
    "loss" (the first 3 training forwards). nll_loss of raw logits is recorded from step 0,
    and the diagnosis says it; with the log-softmax nothing is. HF GPT-2's own loss: read,
    correct."""
    data = [{"x": d["x"], "labels": (d["labels"][0] > 0).long() + (d["labels"][0] > 2).long()}
            for d in _data()]  # fmt: skip
    trainer = transformers.Trainer(
        model=NllOfLogits(log_softmax),
        args=_args(tmp_path, max_steps=6),
        train_dataset=data,
        callbacks=[GradwatchCallback(tmp_path / "run", overhead=None)],
    )
    trainer.train()
    trace = gw.load(tmp_path / "run")
    expected = (
        {
            "checked": 3,
            "mismatched": 0,
            "loss": None,
            "given": None,
            "first_step": None,
            "kind": "cross_entropy",
            "classes": 3,
            "multiple": 1.0,
        }
        if log_softmax
        else {
            "checked": 3,
            "mismatched": 3,
            "loss": "nll_loss",
            "given": "logits",
            "first_step": 0,
            "kind": "nll_loss",
            "classes": None,
            "multiple": 1.0,
        }
    )
    assert trace.meta["config"]["loss_graph"] == expected
    d = gw.diagnose(trace)
    said = [*d.notes, *(f.message for f in d)]
    assert any("NLLLoss expects log-probabilities" in text for text in said) != log_softmax


def test_a_hugging_face_model_s_own_loss_graph_is_read_and_correct(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trainer = transformers.Trainer(
        model=_tiny_gpt2(),
        args=_args(tmp_path, max_steps=4, learning_rate=1e-3),
        train_dataset=_lm_data(),
        callbacks=[GradwatchCallback(tmp_path / "run", overhead=None)],
    )
    trainer.train()
    graph = gw.load(tmp_path / "run").meta["config"]["loss_graph"]
    assert graph["checked"] == 3 and graph["mismatched"] == 0


class NoLabels(Regressor):
    """The regressor as a model that computes no loss: the Trainer keeps the labels."""

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        assert labels is None  # the Trainer took them for the loss it computes itself
        return {"logits": self.net(x)}


def _mse_of_outputs(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> Any:
    return nn.functional.mse_loss(outputs["logits"], labels)


class OwnLoss(transformers.Trainer):  # type: ignore[misc]
    """A Trainer subclass with its own ``compute_loss`` (the usual way to weight a loss)."""

    def compute_loss(  # type: ignore[override]
        self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False, **kw: Any
    ) -> Any:
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = 2.0 * nn.functional.mse_loss(outputs["logits"], labels)
        return (loss, outputs) if return_outputs else loss


@pytest.mark.parametrize("accumulate", [1, 2])
@pytest.mark.parametrize("how", ["compute_loss_func", "compute_loss_override", "label_smoother"])
def test_a_loss_computed_outside_the_model_is_every_step_s_loss(
    tmp_path: Path, how: str, accumulate: int
) -> None:
    """Where the model returns no loss (``compute_loss_func``, a subclass's ``compute_loss``,
    HF's label smoother) the Trainer computes it: each step's is recorded all the same,
    equal to the loss HF logs at every step (logging_steps=1), with gradient accumulation
    too. It was HF's logged loss only, every ``logging_steps`` steps (500 by default). Its
    graph is read, and the Trainer's methods are its class's again after training."""
    torch.manual_seed(0)
    ref = Reference(nn.Sequential())
    common: dict[str, Any] = {
        "args": _args(tmp_path, max_steps=5, gradient_accumulation_steps=accumulate),
        "train_dataset": _data(),
        "callbacks": [GradwatchCallback(tmp_path / "run", overhead=None), ref],
    }
    if how == "compute_loss_func":
        trainer = transformers.Trainer(
            model=NoLabels(), compute_loss_func=_mse_of_outputs, **common
        )
    elif how == "compute_loss_override":
        trainer = OwnLoss(model=NoLabels(), **common)
    else:
        common["args"] = _args(
            tmp_path,
            max_steps=5,
            gradient_accumulation_steps=accumulate,
            label_smoothing_factor=0.1,
            per_device_train_batch_size=4,
            learning_rate=1e-3,
        )
        trainer = transformers.Trainer(
            model=_tiny_gpt2(), **{**common, "train_dataset": _lm_data()}
        )
    trainer.train()
    hf = [logs["loss"] for _, logs in ref.logs if "loss" in logs]
    assert len(hf) == 5
    trace = gw.load(tmp_path / "run")
    np.testing.assert_allclose(trace.scalar("loss"), hf, rtol=1e-5)
    graph = trace.meta["config"]["loss_graph"]
    assert graph["checked"] == 3 and graph["mismatched"] == 0
    assert "training_step" not in vars(trainer) and "compute_loss" not in vars(trainer)


class SoftmaxBeforeLoss(transformers.Trainer):  # type: ignore[misc]
    """A subclass's ``compute_loss`` that applies a softmax before ``cross_entropy``."""

    def compute_loss(  # type: ignore[override]
        self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False, **kw: Any
    ) -> Any:
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = nn.functional.cross_entropy(outputs["logits"].softmax(-1), labels)
        return (loss, outputs) if return_outputs else loss


def test_a_mistake_in_a_trainer_s_own_compute_loss_is_named(tmp_path: Path) -> None:
    """The loss a ``compute_loss`` override computes is read for outputs of the wrong kind: a
    softmax before ``cross_entropy`` is recorded from step 0 and said (it was not seen)."""

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))

        def forward(self, x: torch.Tensor, labels: Any = None) -> dict[str, torch.Tensor]:
            return {"logits": self.net(x)}  # (labels named: the Trainer keeps what it takes)

    data = [{"x": d["x"], "labels": (d["labels"][0] > 0).long() + (d["labels"][0] > 2).long()}
            for d in _data()]  # fmt: skip
    trainer = SoftmaxBeforeLoss(
        model=Classifier(),
        args=_args(tmp_path, max_steps=6),
        train_dataset=data,
        callbacks=[GradwatchCallback(tmp_path / "run", overhead=None)],
    )
    trainer.train()
    trace = gw.load(tmp_path / "run")
    graph = trace.meta["config"]["loss_graph"]
    assert (graph["mismatched"], graph["given"], graph["first_step"]) == (3, "softmax", 0)


def test_hooks_called_by_hand_pool_the_model_s_own_loss(tmp_path: Path) -> None:
    """With no Trainer above its hooks (a loop that calls them itself) the callback pools
    the loss of the model's own output, as the mean of the step's training forwards."""
    torch.manual_seed(0)
    model = Regressor()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    args, state, control = _args(tmp_path), transformers.TrainerState(), None
    cb = GradwatchCallback(tmp_path / "run", overhead=None)
    cb.on_train_begin(args, state, control, model=model, optimizer=opt)
    data = _data()
    for step in range(3):
        for k in range(2):  # two micro-batches a step
            batch = data[2 * step + k]
            model(batch["x"][None], batch["labels"][None])["loss"].backward()
        opt.step()
        opt.zero_grad()
        cb.on_step_end(args, state, control)
    cb.on_train_end(args, state, control)
    per_step = np.asarray(model.losses).reshape(3, 2).mean(axis=1)
    np.testing.assert_allclose(gw.load(tmp_path / "run").scalar("loss"), per_step, rtol=1e-6)


def test_a_hugging_face_model_trains_recorded(tmp_path: Path) -> None:
    """A tiny BERT classifier built from its config: every layer's recorded norms equal the
    reference at each step, and the run diagnoses."""
    torch.manual_seed(0)
    model = tiny_bert()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 64, (32, 12), generator=g)
    data = [{"input_ids": ids[i], "labels": ids[i, 0] % 2} for i in range(32)]
    ref = Reference(model)
    trainer = transformers.Trainer(
        model=model,
        args=_args(tmp_path, max_steps=4, max_grad_norm=0.0, learning_rate=1e-3),
        train_dataset=data,
        callbacks=[GradwatchCallback(tmp_path / "run"), ref],
    )
    trainer.train()
    ref.acts.remove()
    trace = gw.load(tmp_path / "run")
    assert len(trace.layer_names) == len(ref.norms[0]) > 10
    assert_norms_match(trace, ref.norms)
    # Its queries and keys sit under the 1e-7 gradient floor yet AdamW moves them like the
    # other layers: no critical verdict (tests/integrations/test_floor_adaptive_optimizer.py).
    assert not [f for f in gw.diagnose(trace) if f.severity == "critical"]
    # The Trainer zeroes the gradients each step (model.zero_grad()): steps 0-1 compared.
    assert trace.meta["config"]["grad_zeroing"] == {"checked": 1, "kept": 0, "first_kept": None}


def test_clipped_steps_record_the_pre_clip_norm_hf_logs(tmp_path: Path) -> None:
    """With max_grad_norm clipping every step, the recorded global gradient norm is the
    pre-clip norm HF itself logs as grad_norm."""
    model = Regressor()
    ref = Reference(model)
    trainer = transformers.Trainer(
        model=model,
        args=_args(tmp_path, max_steps=6, max_grad_norm=1e-3),
        train_dataset=_data(),
        callbacks=[GradwatchCallback(tmp_path / "run"), ref],
    )
    trainer.train()
    hf = [logs["grad_norm"] for _, logs in ref.logs if "grad_norm" in logs]
    assert len(hf) == 6
    np.testing.assert_allclose(gw.load(tmp_path / "run").scalar("global_grad_norm"), hf, rtol=1e-4)


def test_default_run_dir_is_under_output_dir_and_should_stop_stops(tmp_path: Path) -> None:
    """Without run_dir the run goes to <output_dir>/gradwatch; a watch asking to stop ends
    training after that step."""
    cb = GradwatchCallback()

    class StopAt(transformers.TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == 2 and cb.watch is not None:
                cb.watch.should_stop = True  # what a live on_finding="stop" sets

    trainer = transformers.Trainer(
        model=Regressor(),
        args=_args(tmp_path, max_steps=20),
        train_dataset=_data(),
        callbacks=[cb, StopAt()],
    )
    trainer.train()
    assert trainer.state.global_step == 3
    meta = json.loads((tmp_path / "out" / "gradwatch" / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["steps_recorded"] == 3
    assert meta["trainer"] == {"framework": "transformers", "global_step_at_start": 0}


def test_exception_inside_train_leaves_no_hook_when_used_as_context(
    tmp_path: Path, clip_restored: None
) -> None:
    """train() raising inside `with GradwatchCallback() as cb`: hooks removed, the Trainer's
    methods its class's again, run failed."""

    class Failing(Regressor):
        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            if len(self.losses) == 4:
                raise RuntimeError("boom")
            return super().forward(x, labels)

    model = Failing()
    with pytest.raises(RuntimeError, match="boom"), GradwatchCallback(tmp_path / "run") as cb:
        trainer = transformers.Trainer(
            model=model,
            args=_args(tmp_path, max_steps=10),
            train_dataset=_data(),
            callbacks=[cb],
        )
        trainer.train()
    assert gradwatch_hooks(model, trainer.optimizer.optimizer) == 0
    assert "training_step" not in vars(trainer) and "compute_loss" not in vars(trainer)
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["status"] == "failed"
    assert len(gw.load(tmp_path / "run")) == 4


def test_critical_findings_are_warned_at_the_end(tmp_path: Path) -> None:
    """Non-finite gradients from step 2 on end in a warning that names the rule."""

    trainer = transformers.Trainer(
        model=Exploding(),
        args=_args(tmp_path, max_steps=5, max_grad_norm=0.0),
        train_dataset=_data(),
        callbacks=[GradwatchCallback(tmp_path / "run")],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    messages = [str(w.message) for w in caught]
    assert any("gradwatch found nonfinite_gradient" in m for m in messages), messages


def test_unknown_watch_option_is_refused_at_construction() -> None:
    """A misspelt gw.watch option fails when the callback is built, naming it."""
    with pytest.raises(TypeError, match="every_n"):
        GradwatchCallback(every_n=2)


def test_live_stop_on_a_nonfinite_gradient_ends_training_early(tmp_path: Path) -> None:
    """on_finding="stop": the loss goes non-finite after step 2, the live check at the next
    flush (every 4 steps) asks to stop, and the Trainer's stop flag ends training there."""

    trainer = transformers.Trainer(
        model=Exploding(),
        args=_args(tmp_path, max_steps=40, max_grad_norm=0.0),
        train_dataset=_data(n=400),
        callbacks=[GradwatchCallback(tmp_path / "run", flush_every=4, on_finding="stop")],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    assert trainer.state.global_step <= 8, trainer.state.global_step
    trace = gw.load(tmp_path / "run")
    assert trace.meta["status"] == "complete" and len(trace) == trainer.state.global_step
    live = [
        json.loads(line) for line in (tmp_path / "run" / "findings.jsonl").read_text().splitlines()
    ]
    assert any(f["rule"] == "nonfinite_gradient" for f in live)


class ScaledTrainer(transformers.Trainer):  # type: ignore[misc]
    """A Trainer whose accelerator holds a GradScaler, as accelerate's does under fp16 on a
    GPU (on CPU accelerate makes none); the optimizer is HF's default, fused AdamW."""

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        self.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)


def _scaled_run(tmp_path: Path, trainer_type: type, poison_at: int | None = None) -> Any:
    torch.manual_seed(0)
    model = Regressor()
    calls = {"n": 0}

    def poison(g: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return g * float("inf") if calls["n"] - 1 == poison_at else g

    model.net[2].weight.register_hook(poison)
    cb = GradwatchCallback(tmp_path / "run", overhead=None)
    trainer = trainer_type(
        model=model,
        args=_args(tmp_path, max_steps=5, logging_steps=500, max_grad_norm=0.0),
        train_dataset=_data(),
        callbacks=[cb],
    )
    trainer.train()
    return trainer, cb, gw.load(tmp_path / "run")


def test_accelerate_s_gradscaler_is_watched_with_the_fused_default_optimizer(
    tmp_path: Path,
) -> None:
    """The callback hands the AcceleratedOptimizer's GradScaler to the watch. HF's default
    optimizer (fused AdamW) unscales in its own kernel, so the gradients its step hooks see
    still carry the loss scale: they are recorded unscaled, equal to the same run without a
    scaler (scaling by a power of two is exact); a step the scaler skips is recorded so."""
    trainer, cb, trace = _scaled_run(tmp_path / "a", ScaledTrainer)
    assert trainer.args.optim == "adamw_torch_fused"
    assert cb.watch.scaler is trainer.optimizer.scaler is not None
    _, _, plain = _scaled_run(tmp_path / "b", transformers.Trainer)
    np.testing.assert_allclose(trace.matrix("grad_norm"), plain.matrix("grad_norm"), rtol=1e-6)
    np.testing.assert_allclose(trace.scalar("loss"), plain.scalar("loss"), rtol=1e-6)

    trainer, _, trace = _scaled_run(tmp_path / "c", ScaledTrainer, poison_at=2)
    assert trainer.optimizer.scaler.get_scale() == 512.0  # it skipped once
    # (Every layer is non-finite there: HF's grad-norm, clip_grad_norm_ at max_norm inf,
    # multiplies every gradient by inf / inf = NaN.)
    assert trace.steps.tolist() == list(range(5)) and list(trace.skipped_steps()) == [2]
    finding = next(f for f in gw.diagnose(trace) if f.rule == "nonfinite_gradient")
    assert finding.severity != "critical"


@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_causal_lm_s_loss_over_num_items_in_batch_reads_as_its_mean(
    tmp_path: Path, accumulate: int
) -> None:
    """GPT-2 accepts loss kwargs: the Trainer passes num_items_in_batch, the model sums its
    tokens' losses and divides by the accumulated batch's count, and the Trainer adds the
    micro-batches' shares. The step's loss is the mean, and the graph says so (the hot start
    of diagnosis/trained_start.py needs it): the sum's count over the divisor, times the
    micro-batches, near 1 (ignored labels make the micro-batches' counts differ)."""
    torch.manual_seed(0)
    trainer = transformers.Trainer(
        model=_tiny_gpt2(),
        args=_args(tmp_path, max_steps=3, gradient_accumulation_steps=accumulate),
        train_dataset=_lm_data(),
        callbacks=[GradwatchCallback(tmp_path / "run", overhead=None)],
    )
    trainer.train()
    assert trainer.model_accepts_loss_kwargs  # (num_items_in_batch was passed)
    graph = gw.load(tmp_path / "run").meta["config"]["loss_graph"]
    assert graph["multiple"] == pytest.approx(1, abs=0.25)


def test_logits_that_start_too_large_are_named_under_the_trainer(tmp_path: Path) -> None:
    """GPT-2 built with initializer_range 1.0 (50x its default) starts far above log V
    under the Trainer, whose loss is a sum over tokens divided by num_items_in_batch:
    poor_initialization names the hot start (it read nothing there before the graph's
    count was read); at its default range the same run draws no such finding."""

    def run(initializer_range: float, name: str) -> gw.Diagnosis:
        torch.manual_seed(0)
        config = transformers.GPT2Config(
            vocab_size=64, n_positions=16, n_embd=16, n_layer=2, n_head=2,
            initializer_range=initializer_range,
        )  # fmt: skip
        transformers.Trainer(
            model=transformers.GPT2LMHeadModel(config),
            args=_args(tmp_path / name, max_steps=12, learning_rate=1e-3),
            train_dataset=_lm_data(),
            callbacks=[GradwatchCallback(tmp_path / name, overhead=None)],
        ).train()
        return gw.diagnose(gw.load(tmp_path / name))

    said = [f.message for f in run(1.0, "large") if f.rule == "poor_initialization"]
    assert any("the output logits start too large" in text for text in said), said
    said = [f.message for f in run(0.02, "default") if f.rule == "poor_initialization"]
    assert not any("logits start too large" in text for text in said), said
