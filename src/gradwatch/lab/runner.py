"""Run one lab experiment: build, remedy, train with ``gw.watch``, evaluate, summarise.

Determinism: ``torch.manual_seed(seed)`` before the model is built, and a dedicated
``torch.Generator`` seeded from ``seed`` for the data order and the data-dependent remedies,
so two runs with one config give identical traces on one machine, torch build and thread
count. Remaining nondeterminism: float reductions may differ across torch versions, CPU
instruction sets (AVX2 vs AVX-512) and ``torch.get_num_threads()`` (the CLI does not change
it; the tests pin 1 thread), and on GPUs unless ``torch.use_deterministic_algorithms(True)``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradwatch.diagnosis import diagnose
from gradwatch.trace import Trace

from .config import RunConfig
from .models import build_model
from .remedies import apply_to_built, remedied_model_config, training_specs
from .tasks import Task, make_task
from .training import Batch, index_batches, train_recorded

#: Written last and atomically: a run dir with this file is a finished run.
RESULT_FILE = "result.json"
CONFIG_FILE = "lab_config.json"


@dataclass(frozen=True)
class RunResult:
    """What one lab run measured.

    Attributes:
        name: The run's label.
        run_dir: Its gradwatch run directory (None for an in-memory run).
        task, metric: Task name and metric name (``"accuracy"`` or ``"mse"``).
        test_metric: The metric on the held-out test set after training.
        baseline: The trivial predictor's test metric (chance accuracy, predict-the-mean MSE).
        final_loss: Mean training loss over the last 10% of steps (NaN if it diverged).
        grad_ratio: Median over recorded steps of the first layer's gradient RMS divided by
            the last layer's (<< 1: vanishing toward the input; >> 1: exploding).
        diverged: True if the loss became non-finite (training stopped there).
        steps: Optimizer steps taken.
        seconds: Wall time of setup + training + evaluation.
        findings: Rule id and severity of each diagnosis finding (empty without diagnosis).
        remedies: The remedy ids applied.
        seed: The run's seed.
    """

    name: str
    run_dir: str | None
    task: str
    metric: str
    test_metric: float
    baseline: float
    final_loss: float
    grad_ratio: float
    diverged: bool
    steps: int
    seconds: float
    findings: list[dict[str, str]] = field(default_factory=list)
    remedies: list[str] = field(default_factory=list)
    seed: int = 0
    losses: list[float] = field(default_factory=list, repr=False)
    # The recorded trace itself (not saved in result.json; gw.load(run_dir) reads it back).
    trace: Trace | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready data, without the trace."""
        data = {k: v for k, v in asdict(self).items() if k != "trace"}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        return cls(**data)


def _optimizer(config: RunConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    # foreach=True: one multi-tensor kernel per update instead of a Python loop over
    # parameters (PyTorch picks it only on GPUs): 300 Adam steps of the 20-layer demo MLP
    # took 2.4 s instead of 4.3 s on the 2-core CI machine, with the same arithmetic.
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, foreach=True)
    if config.optimizer == "momentum":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, foreach=True)
    return torch.optim.Adam(params, lr=config.lr, foreach=True)


def build(config: RunConfig, task: Task) -> tuple[nn.Module, torch.Generator]:
    """The remedied model for ``config`` (seeded) and the run's data-order generator.

    Structural remedies rewrite the model config; LSUV and layer-wise pretraining are then
    applied to the built model by ``gradwatch.remedies`` (see :mod:`gradwatch.lab.remedies`).
    """
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model_config = remedied_model_config(config.model, config.remedies, config.remedy_options)
    model = build_model(model_config, task.in_features, task.out_features)
    model = apply_to_built(
        model,
        remedies=config.remedies,
        options=config.remedy_options,
        x_train=task.x_train,
        gen=gen,
        batch_size=config.batch_size,
    )
    return model, gen


def _train_batches(task: Task, batch_size: int, gen: torch.Generator) -> Iterator[Batch]:
    for idx in index_batches(len(task.x_train), batch_size, gen):
        yield task.x_train[idx], task.y_train[idx]


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, batch_size: int = 512) -> float:
    """The task metric on the test set, in eval mode (batch norm uses its running stats)."""
    was_training = model.training
    model.eval()
    try:
        outputs = [
            model(task.x_test[i : i + batch_size]) for i in range(0, len(task.x_test), batch_size)
        ]
        return task.metric(torch.cat(outputs), task.y_test)
    finally:
        model.train(was_training)


def grad_rms_ratio(trace: Trace) -> float:
    """Median over steps of grad_rms(first layer) / grad_rms(last layer); NaN if unmeasured.

    The one definition, ``Trace.grad_ratio("median")``; the demo and the CLI print it.
    """
    return trace.grad_ratio("median").value


def _findings(trace: Trace) -> list[dict[str, str]]:
    return [{"rule": f.rule, "severity": f.severity} for f in diagnose(trace)]


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def run(
    config: RunConfig,
    run_dir: str | os.PathLike[str] | None = None,
    *,
    task: Task | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Train ``config`` recorded by ``gw.watch`` into ``run_dir`` and return its result.

    Args:
        config: A validated :class:`RunConfig`.
        run_dir: Where the gradwatch run goes (``meta.json``, Parquet chunks, plus
            ``lab_config.json`` and, written last, ``result.json``); None keeps it in memory.
        task: A task already built from ``config`` (saves rebuilding it in sweeps).
        overwrite: Replace a run already in ``run_dir``.
        progress: Optional callable ``progress(step, steps)`` called after each step.

    Example:
        >>> from gradwatch.lab.models import MLPConfig
        >>> cfg = RunConfig(model=MLPConfig(depth=3, width=16), task="spirals", steps=20)
        >>> run(cfg).steps
        20
    """
    config = config.validate()
    started = time.perf_counter()
    task = task if task is not None else make_task(config.task, config.task_config)
    if task.name != config.task:
        raise ValueError(f"task={task.name!r} was passed for a config of task {config.task!r}")
    model, gen = build(config, task)
    name = config.name or (Path(run_dir).name if run_dir is not None else "run")
    path = Path(run_dir) if run_dir is not None else None
    if path is not None and overwrite and (path / RESULT_FILE).exists():
        (path / RESULT_FILE).unlink()

    def write_config() -> None:  # once the watch has accepted the run dir
        if path is not None:
            _write_json_atomic(path / CONFIG_FILE, config.to_dict())

    trained = train_recorded(
        model,
        _train_batches(task, min(config.batch_size, len(task.x_train)), gen),
        steps=config.steps,
        optimizer=lambda params: _optimizer(config, params),
        loss_fn=task.loss,
        seed=config.seed,
        during=training_specs(config.remedies, config.remedy_options),
        run_dir=path,
        watch_options={
            "every": config.every,
            "sample_every": config.sample_every,
            "overwrite": overwrite,
            "meta": {"lab": config.to_dict()},
        },
        stop_if_diverged=True,
        on_start=write_config,
        progress=progress,
    )
    trace, losses, steps_taken = trained.trace, trained.losses, trained.steps
    diverged = trained.stopped or not all(math.isfinite(v) for v in losses)
    tail = losses[-max(1, steps_taken // 10) :]
    result = RunResult(
        name=name,
        run_dir=str(path) if path is not None else None,
        task=task.name,
        metric=task.metric_name,
        test_metric=evaluate(model, task),
        baseline=task.baseline,
        final_loss=float(np.mean(tail)) if not diverged else math.nan,
        grad_ratio=grad_rms_ratio(trace),
        diverged=diverged,
        steps=steps_taken,
        seconds=time.perf_counter() - started,
        findings=_findings(trace),
        remedies=list(config.remedies),
        seed=config.seed,
        losses=losses,
        trace=trace,
    )
    if path is not None:
        _write_json_atomic(path / RESULT_FILE, result.to_json())
    return result


def load_result(run_dir: str | os.PathLike[str]) -> RunResult | None:
    """The result of a finished run, or None when ``run_dir`` holds no finished run."""
    path = Path(run_dir) / RESULT_FILE
    if not path.is_file():
        return None
    return RunResult.from_json(json.loads(path.read_text()))


def with_seed(config: RunConfig, seed: int) -> RunConfig:
    """``config`` with another seed (and the seed in its name, if it has one)."""
    return replace(config, seed=seed, name=f"{config.name}-s{seed}" if config.name else "")
