"""Verify a remedy: train a copy with and without it, recorded, and compare.

Both runs start from the same weights (copies of the user's model), see the same batches
in the same order and the same random stream (``torch.manual_seed(seed)`` before each),
and are trained by the lab's one recorded training loop (:func:`~.training.train_recorded`,
the loop of every lab run). The comparison reads the traces: the ratio of the first to the
last weight layer's gradient RMS (``Trace.grad_ratio``; 1 = the gradient reaches the input
layer at full strength; 1e-6 = it has vanished), the loss, and the findings of
``gradwatch.diagnose`` that disappeared or appeared.

It lives with the experiment runner, above ``remedies``: it trains, records and diagnoses,
which a remedy does not. It copies models and classifies layers with the remedies' own
helpers (``copy_model``, ``norm_types``, ``activation_types``), so both agree on what a
weight layer is.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from gradwatch.diagnosis import Finding
from gradwatch.diagnosis import diagnose as diagnose_trace
from gradwatch.remedies import activation_types, apply, copy_model, norm_types
from gradwatch.remedies.prescribe import Prescription
from gradwatch.remedies.registry import TRAINING_TIME
from gradwatch.report.console import progress as progress_bar
from gradwatch.trace import Trace

from .training import Batch, OptimizerFactory, RemedySpec, model_device, train_recorded

__all__ = ["ArmResult", "Verification", "verify"]

RemedyFn = str | Callable[[nn.Module], nn.Module]
Remedy = RemedyFn | Prescription
Diagnose = Callable[[Trace], Sequence[Finding]]


@dataclass(frozen=True)
class ArmResult:
    """One of the two training runs of :func:`verify`.

    Attributes:
        label: ``"baseline"`` or the remedy's name.
        first_layer: Name of the first weight layer (norm layers are skipped).
        last_layer: Name of the last weight layer.
        grad_ratio_first: First/last layer gradient RMS at the first step (initialisation).
        grad_ratio_last: The same at the last step.
        loss_first: Loss at the first step.
        loss_last: Mean loss over the last 10% of the steps (at least one).
        findings: Rule ids diagnosed on the trace.
        trace: The recorded trace.
    """

    label: str
    first_layer: str
    last_layer: str
    grad_ratio_first: float
    grad_ratio_last: float
    loss_first: float
    loss_last: float
    findings: tuple[str, ...]
    trace: Trace


@dataclass(frozen=True)
class Verification:
    """Before/after comparison of a remedy (see :func:`verify`)."""

    remedy: str
    steps: int
    seed: int
    before: ArmResult
    after: ArmResult

    @property
    def gradient_gain(self) -> float:
        """How many times the remedy raised the first/last gradient ratio at step 0."""
        return self.after.grad_ratio_first / self.before.grad_ratio_first

    @property
    def disappeared(self) -> tuple[str, ...]:
        """Findings of the baseline that the remedy made go away."""
        return tuple(r for r in self.before.findings if r not in self.after.findings)

    @property
    def appeared(self) -> tuple[str, ...]:
        """Findings that only the remedied run has."""
        return tuple(r for r in self.after.findings if r not in self.before.findings)

    def summary(self) -> str:
        """A small plain-text table of the comparison."""
        b, a = self.before, self.after
        lines = [
            f"verify {self.remedy}: {self.steps} steps, seed {self.seed}",
            f"{'':28}{'baseline':>12}{self.remedy[:12]:>14}",
            f"{'grad RMS first/last, step 0':28}{b.grad_ratio_first:>12.3g}"
            f"{a.grad_ratio_first:>14.3g}",
            f"{'grad RMS first/last, last':28}{b.grad_ratio_last:>12.3g}{a.grad_ratio_last:>14.3g}",
            f"{'loss, first step':28}{b.loss_first:>12.4g}{a.loss_first:>14.4g}",
            f"{'loss, last steps':28}{b.loss_last:>12.4g}{a.loss_last:>14.4g}",
        ]
        lines.append(
            f"findings gone: {list(self.disappeared) or 'none'}; "
            f"new: {list(self.appeared) or 'none'}"
        )
        return "\n".join(lines)


def _default_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if not y.is_floating_point():
        return nn.functional.cross_entropy(out, y)
    return nn.functional.mse_loss(out, y)


def _remedied(
    model: nn.Module, remedy: RemedyFn, options: dict[str, Any], batches: Sequence[Any]
) -> tuple[nn.Module, dict[str, Any] | None]:
    """The remedied copy, and the remedy's options when it acts during training (a clipper,
    a warm-up: ``train_recorded`` makes it on the run's optimizer)."""
    if callable(remedy):
        out = remedy(copy_model(model))
        if not isinstance(out, nn.Module):
            raise TypeError(
                f"expected the remedy callable to return an nn.Module but got {type(out).__name__}"
            )
        return out, None
    if remedy in TRAINING_TIME:
        return copy_model(model), dict(options)
    opts = dict(options)
    if remedy == "init_lsuv":
        opts.setdefault("inputs", batches[0][0])
    if remedy == "layerwise_pretraining":
        opts.setdefault("data", [b[0] for b in batches])
    treated = apply(model, remedy, **opts)
    assert isinstance(treated, nn.Module)
    return treated, None


def _weight_columns(trace: Trace) -> tuple[int, int]:
    """First and last recorded weight layer (norms and PReLU activations are layers too,
    but their gradients say nothing about the depth profile)."""
    skip = {t.__name__ for t in (*norm_types(), *activation_types())}
    cols = [i for i, layer in enumerate(trace.layers) if layer.type not in skip]
    if not cols:
        raise ValueError("the recorded model has no weight layer to compare")
    order = sorted(cols, key=lambda i: trace.layers[i].depth)
    return order[0], order[-1]


def _cycled(batches: Sequence[Any], device: torch.device) -> Iterator[Batch]:
    """The batches in order, cycled, moved to the model's device."""
    for x, y in itertools.cycle(batches):
        yield x.to(device), y.to(device)


def _run(
    label: str,
    model: nn.Module,
    during: dict[str, Any] | None,
    *,
    remedy: str,
    batches: Sequence[Any],
    steps: int,
    seed: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: OptimizerFactory,
    diagnose: Diagnose,
    progress: Callable[[int, int], None] | None = None,
) -> ArmResult:
    specs: list[RemedySpec] = [(remedy, during)] if during is not None else []
    trace = train_recorded(
        model,
        _cycled(batches, model_device(model)),
        steps=steps,
        optimizer=optimizer,
        loss_fn=loss_fn,
        seed=seed,
        during=specs,
        progress=progress,
    ).trace
    first, last = _weight_columns(trace)
    at_first, at_last = int(trace.steps[0]), int(trace.steps[-1])
    losses = trace.scalar("loss")
    tail = max(1, steps // 10)
    return ArmResult(
        label=label,
        first_layer=trace.layers[first].name,
        last_layer=trace.layers[last].name,
        grad_ratio_first=trace.grad_ratio(at_first, first=first, last=last).value,
        grad_ratio_last=trace.grad_ratio(at_last, first=first, last=last).value,
        loss_first=float(losses[0]),
        loss_last=_mean_or_nan(losses[-tail:]),
        findings=tuple(dict.fromkeys(f.rule for f in diagnose(trace))),
        trace=trace,
    )


def _mean_or_nan(values: np.ndarray) -> float:
    """Mean of the measured (non-NaN) values; NaN when there is none (e.g. a diverged run)."""
    measured = values[~np.isnan(values)]
    return float(measured.mean()) if len(measured) else math.nan


def verify(
    model: nn.Module,
    remedy: Remedy,
    batches: Sequence[Any],
    steps: int = 100,
    seed: int = 0,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    optimizer: OptimizerFactory | None = None,
    options: dict[str, Any] | None = None,
    diagnose: Diagnose | None = None,
    progress: bool | None = None,
) -> Verification:
    """Train a copy of ``model`` with and without ``remedy`` and compare the recordings.

    Args:
        model: The model; it is not modified (both runs train copies).
        remedy: A remedy id (``remedies.apply``; ``clip_*`` clippers and the ``lr_warmup``
            scheduler act on the run's optimizer, ``init_lsuv`` defaults to the first
            batch, ``layerwise_pretraining`` to the batches' inputs), a function taking a
            copy of the model and returning the remedied model (e.g. relu then He init), or
            a :class:`Prescription` (its suggested options are used).
        batches: ``(inputs, targets)`` pairs, used in order and cycled.
        steps: Optimizer steps per run.
        seed: Seed set before each run (same dropout masks, same init of new layers).
        loss_fn: ``loss_fn(output, targets)``; default cross-entropy for integer targets,
            mean squared error otherwise.
        optimizer: A factory ``params -> Optimizer``; default ``SGD(lr=0.01)``.
        options: Options of the remedy (``remedies.apply``); they override a
            prescription's.
        diagnose: ``trace -> findings``; default ``gradwatch.diagnose``.
        progress: Show a progress bar over both runs' steps (``N/M``, time left).
            ``None``: only when stdout is a terminal (never in a pipe or a log).

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <...>
        >>> layers = [nn.Linear(8, 8) if i % 2 == 0 else nn.Sigmoid() for i in range(12)]
        >>> mlp = nn.Sequential(*layers, nn.Linear(8, 1))
        >>> data = [(torch.randn(32, 8), torch.randn(32, 1))]
        >>> v = verify(mlp, "residual", data, steps=2, seed=0)
        >>> v.gradient_gain > 10
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected `model` to be a torch.nn.Module but got {type(model).__name__}")
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"expected `steps` to be an int >= 1 but got {steps!r}")
    batches = list(batches)
    if not batches or not all(isinstance(b, (tuple, list)) and len(b) == 2 for b in batches):
        raise ValueError("expected `batches` to be a non-empty sequence of (inputs, targets) pairs")
    opts: dict[str, Any] = {}
    chosen: RemedyFn
    if isinstance(remedy, Prescription):
        # its suggested options (max_norm ...), minus the "<required>" placeholders
        opts = {k: v for k, v in remedy.options.items() if v != "<required>"}
        chosen = remedy.remedy
    else:
        chosen = remedy
    opts.update(options or {})
    name = chosen if isinstance(chosen, str) else getattr(chosen, "__name__", "remedy")
    loss = loss_fn or _default_loss
    make_opt = optimizer or (lambda params: torch.optim.SGD(params, lr=0.01))
    diag = diagnose if diagnose is not None else diagnose_trace

    torch.manual_seed(seed)
    treated, during = _remedied(model, chosen, opts, batches)
    common: dict[str, Any] = {
        "remedy": name,
        "batches": batches,
        "steps": steps,
        "seed": seed,
        "loss_fn": loss,
        "optimizer": make_opt,
        "diagnose": diag,
    }
    with progress_bar(f"verify {name}", 2 * steps, enabled=progress, transient=True) as bar:
        before = _run(
            "baseline",
            copy_model(model),
            None,
            **common,
            progress=bar.step_callback(0, f"verify {name}: baseline") if bar.active else None,
        )
        after = _run(
            name,
            treated,
            during,
            **common,
            progress=bar.step_callback(steps, f"verify {name}: with it") if bar.active else None,
        )
    return Verification(remedy=name, steps=steps, seed=seed, before=before, after=after)
