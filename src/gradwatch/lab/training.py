"""The one recorded training loop of the lab: ``lab.run`` and ``verify`` both train through it.

Seed, optimizer, ``watch``, the training-time remedies (clippers, a warm-up), the step loop
and the loss logging live here once, so a lab run and a verification arm train a model the
same way and record the same trace layout.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from gradwatch.recording import Watch, watch
from gradwatch.remedies import REMEDIES, apply
from gradwatch.remedies.clipping import GradientClipper
from gradwatch.remedies.registry import TRAINING_TIME
from gradwatch.trace import Trace, load

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]
#: A training-time remedy id (``"clip_norm"``, ``"lr_warmup"`` ...: one that returns a clipper
#: or a scheduler, not a model) and its ``gradwatch.remedies.apply`` options.
RemedySpec = tuple[str, Mapping[str, Any]]

#: Steps between two host reads of the loss when stopping diverged runs: one sync per 50
#: steps costs nothing measurable, one per step would.
DIVERGENCE_CHECK_EVERY = 50


@dataclass(frozen=True)
class Trained:
    """What :func:`train_recorded` measured.

    Attributes:
        trace: The recorded trace (read back from ``run_dir`` when there is one).
        losses: Training loss of every step taken, on the host.
        steps: Optimizer steps taken (fewer than asked when a diverged run stopped).
        stopped: True when the loss became non-finite and the loop stopped early.
    """

    trace: Trace
    losses: list[float]
    steps: int
    stopped: bool


def index_batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches forever: a fresh permutation per epoch, drawn from ``gen`` only.

    Example:
        >>> it = index_batches(5, 2, torch.Generator().manual_seed(0))
        >>> [len(next(it)) for _ in range(3)]
        [2, 2, 2]
    """
    while True:
        order = torch.randperm(n, generator=gen)
        for start in range(0, n - batch_size + 1, batch_size):  # drop the ragged tail
            yield order[start : start + batch_size]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _check_training_time(specs: Sequence[RemedySpec]) -> None:
    for rid, _ in specs:
        if rid not in TRAINING_TIME:
            raise ValueError(
                f"remedy {rid!r} is not a training-time remedy; expected one of "
                f"{list(TRAINING_TIME)} (a model remedy is applied to the model before training)"
            )


def _schedulers(
    model: nn.Module, specs: Sequence[RemedySpec], opt: torch.optim.Optimizer
) -> list[LRScheduler]:
    """One scheduler per scheduler remedy (``lr_warmup``), on the run's optimizer."""
    out = []
    for rid, options in specs:
        if REMEDIES[rid].returns == "scheduler":
            scheduler = apply(model, rid, optimizer=opt, **options)
            assert isinstance(scheduler, LRScheduler)  # what the registry says it returns
            out.append(scheduler)
    return out


def _clippers(model: nn.Module, specs: Sequence[RemedySpec], w: Watch) -> list[GradientClipper]:
    """One ``GradientClipper`` per clip remedy, made by ``gradwatch.remedies.apply``.

    A single clipper logs ``clip_coef`` and ``clipped`` into the watch each step; with
    several, their scalars would share those names, so none logs.
    """
    clips = [(rid, options) for rid, options in specs if REMEDIES[rid].returns == "clipper"]
    log_into = w if len(clips) == 1 else None
    out = []
    for rid, options in clips:
        clipper = apply(model, rid, watch=log_into, **options)
        assert isinstance(clipper, GradientClipper)  # what the registry says it returns
        out.append(clipper)
    return out


def train_recorded(
    model: nn.Module,
    batches: Iterator[Batch],
    *,
    steps: int,
    optimizer: OptimizerFactory,
    loss_fn: LossFn,
    seed: int | None = None,
    during: Sequence[RemedySpec] = (),
    run_dir: str | os.PathLike[str] | None = None,
    watch_options: Mapping[str, Any] | None = None,
    stop_if_diverged: bool = False,
    on_start: Callable[[], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Trained:
    """Train ``model`` in place for ``steps`` optimizer steps, recorded by ``watch``.

    Each step: forward on the next ``(x, y)`` of ``batches``, ``loss_fn(output, y)``,
    backward, the clippers (in order), ``optimizer.step()``, the schedulers' ``step()``,
    ``w.log(loss=loss)``. The clippers run before the step, so the recorder sees the
    gradients the optimizer applies; the schedulers after it, so it records the rate the
    step used (``optimizer_lr``).

    Args:
        model: Trained in place (``model.train()`` first).
        batches: ``(inputs, targets)`` pairs already on the model's device.
        steps: Optimizer steps to take.
        optimizer: A factory ``params -> Optimizer``.
        loss_fn: ``loss_fn(output, targets)`` -> a scalar tensor.
        seed: ``torch.manual_seed(seed)`` before the optimizer is made (same dropout masks
            for two models trained alike); None leaves the global generator as it is.
        during: Training-time remedies, made by ``remedies.apply``: each clip remedy a
            ``GradientClipper``, each ``lr_warmup`` a scheduler on the run's optimizer.
        run_dir: Where ``watch`` writes the run (None keeps it in memory).
        watch_options: Keyword arguments of ``watch`` (``every``, ``sample_every``, ``meta``,
            ``overwrite`` ...); ``overhead`` is None (fixed spacing) unless given here.
        stop_if_diverged: Stop once the loss is non-finite (checked every
            :data:`DIVERGENCE_CHECK_EVERY` steps, one host sync each).
        on_start: Called once the watch has accepted ``run_dir`` (to write files beside it).
        progress: Called as ``progress(step, steps)`` after each step.

    Example:
        >>> net = nn.Linear(3, 1)
        >>> data = iter([(torch.randn(4, 3), torch.randn(4, 1))] * 5)
        >>> done = train_recorded(net, data, steps=5, loss_fn=nn.functional.mse_loss,
        ...                       optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
        >>> done.steps, len(done.losses)
        (5, 5)
    """
    _check_training_time(during)
    if seed is not None:
        torch.manual_seed(seed)
    opt = optimizer(model.parameters())
    # before the watch: a bad option fails before anything is written to run_dir
    schedulers = _schedulers(model, during, opt)
    # Losses stay on the model's device until the end: one transfer, no sync per step.
    loss_t = torch.zeros(steps, device=model_device(model))
    stopped = False
    model.train()
    # The lab records with a fixed spacing (no overhead budget): which steps are sampled must
    # not depend on how fast the machine is, so an experiment's trace is reproducible.
    options = {"overhead": None, **dict(watch_options or {})}
    with watch(model, opt, run_dir, **options) as w:
        if on_start is not None:
            on_start()
        clippers = _clippers(model, during, w)
        try:
            for step in range(steps):
                x, y = next(batches)
                loss = loss_fn(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                for clipper in clippers:
                    clipper.clip_()
                opt.step()
                for scheduler in schedulers:
                    scheduler.step()
                w.log(loss=loss)
                loss_t[step] = loss.detach()
                check = stop_if_diverged and (step + 1) % DIVERGENCE_CHECK_EVERY == 0
                if check and not bool(torch.isfinite(loss_t[step])):
                    stopped = True
                    break
                if progress is not None:
                    progress(step + 1, steps)
        finally:
            for clipper in clippers:  # logs the last step's clip statistics into the watch
                clipper.remove()
        taken = w.num_steps
    trace = load(Path(run_dir)) if run_dir is not None else w.trace
    return Trained(trace=trace, losses=loss_t[:taken].tolist(), steps=taken, stopped=stopped)
