"""``gw.watch``: the recorder, with the live layer attached (online findings, streams).

Recording knows nothing of rules (``gradwatch.recording.watch`` only records); this
``watch`` builds the recorder with the same arguments and attaches, as flush listeners, the
TensorBoard and wandb streams and the online diagnosis, in that order: a window is streamed
before ``on_finding="raise"`` can end the run on it. The lab calls the recorder directly, so
its own output stays free of live warnings.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import torch
from torch import nn

from ..diagnosis import Severity
from ..recording import Flush, Watch
from ..recording.schedule import DEFAULT_OVERHEAD
from .online import LiveDiagnosis, OnFinding, check_min_severity, check_on_finding
from .stream import TensorBoardStream, WandbStream


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    *,
    every: int = 1,
    sample_every: int = 10,
    dense_steps: int = 20,
    flush_every: int | None = None,
    overwrite: bool = False,
    scaler: Any | None = None,
    activations: bool = True,
    meta: dict[str, Any] | None = None,
    strict: bool = False,
    step_begin: Literal["optimizer", "caller"] = "optimizer",
    overhead: float | None = DEFAULT_OVERHEAD,
    on_finding: OnFinding = "warn",
    min_severity: Severity = "warning",
    tensorboard: str | os.PathLike[str] | Any | None = None,
    wandb: Any | None = None,
) -> Watch:
    """Start recording per-layer statistics of ``model`` while it trains, and watch them.

    The recording (``gradwatch.recording.Watch``, same arguments) plus what happens live: at
    each flush the diagnosis rules run on the steps so far (on the host, on data already
    there), and each new or worsened finding goes to ``on_finding`` and to
    ``findings.jsonl`` in the run directory; per-layer scalars stream to TensorBoard or
    wandb if asked.

    Args:
        model: The module to watch. Its layers are the modules that own trainable
            parameters, ordered by first use in the forward pass.
        optimizer: The optimizer that updates ``model``, or a wrapper of it (accelerate's
            ``AcceleratedOptimizer``, Lightning's ``LightningOptimizer``); steps are recorded
            through its step hooks (so gradient accumulation counts optimizer steps). Without
            one, call ``w.step()`` after each ``backward()``.
        run_dir: Directory to write the run to (``meta.json`` + Parquet chunks); ``None``
            keeps the trace in memory.
        every: Record gradient and weight statistics every ``every`` steps.
        sample_every: Measure activations, output gradients, recurrent input-gradient
            profiles and update ratios every ``sample_every`` steps.
        dense_steps: Also measure them on every one of the first ``dense_steps`` steps,
            where early blow-ups happen (0: only every ``sample_every`` steps).
        flush_every: Steps kept in the device buffer between two writes (each a flush: the
            write, and the live check). None (the default): 100, lengthened by the
            recorder (doubling, up to 1600 steps and 5 s of training) while flushes alone
            cost over a quarter of the ``overhead`` budget, as on sub-millisecond steps
            (under ``torch.distributed`` the longest any rank proposes); 100 fixed with
            ``overhead=None``.
        overwrite: Replace a run already in ``run_dir``.
        scaler: A ``torch.amp.GradScaler``: steps it skips are recorded as skipped.
        activations: Set False to skip forward hooks entirely (gradients only).
        meta: Extra JSON-serialisable metadata to store with the run; its keys may not be
            ones gradwatch writes itself (``status``, ``model``, ``config`` ...).
        strict: Raise when the run directory cannot be written during training (a full
            disk) instead of stopping the recording with a warning; training never stops
            for gradwatch unless you ask for it.
        step_begin: ``"caller"`` leaves out the optimizer's step pre-hook: the caller calls
            ``w.begin_step()`` once the step's gradients are final (the Lightning callback
            does); the post-hook still ends each step.
        overhead: The recorder's budget, a share of the step time (0.03: 3%): sampled steps
            (then, if needed, plain ones) are spaced to stay under it; None keeps the fixed
            ``every``/``sample_every`` spacing (see ``gradwatch.recording.watch``).
        on_finding: What to do with a new (or worsened) finding: ``"warn"`` prints one line
            on stderr, once; ``"raise"`` raises :class:`GradientProblem` from the next
            optimizer step after the flush that showed it (the run directory holds every
            step up to it); ``"stop"`` warns and sets ``w.should_stop`` so your loop can end
            cleanly (the Lightning and Hugging Face callbacks stop their trainer); or a
            function called with the Finding.
        min_severity: Findings below it (``"info"`` < ``"warning"`` < ``"critical"``) are
            logged to ``findings.jsonl`` but not handed to ``on_finding``.
        tensorboard: A log directory or a ``SummaryWriter``: each flush writes
            ``grad_rms``, ``update_ratio``, ``act_dead`` and ``act_saturated`` per layer at
            its sampled steps (tags ``grad_rms/L03 <layer>``, in depth order, as
            ``gradwatch export`` names them), ``global_grad_norm`` at every step, and the
            findings as text.
        wandb: A wandb run (``wandb.init(...)``): the same values through ``run.log``, on
            their own step axis ``gradwatch/step``.

    Raises:
        TypeError: When an argument has the wrong type (``scaler`` that is not a
            GradScaler instance, ...).
        ValueError: When an argument has a wrong value (a reserved ``meta`` key, an unknown
            ``on_finding`` ...).
        OSError: When ``run_dir`` cannot be written at the start.

    Returns:
        A :class:`~gradwatch.recording.Watch`; use it as a context manager, or call
        ``close()``.

    Example:
        >>> import torch, gradwatch as gw
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(),
        ...                             torch.nn.Linear(8, 1))
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> with gw.watch(model, opt, on_finding="stop") as w:
        ...     for _ in range(3):
        ...         loss = model(torch.randn(16, 4)).pow(2).mean()
        ...         opt.zero_grad(); loss.backward(); opt.step()
        ...         w.log(loss=loss)
        ...         if w.should_stop:
        ...             break
        >>> w.trace.matrix("grad_rms").shape
        (3, 2)
    """
    # Every live argument is checked before the recorder makes a directory or a hook.
    on_finding = check_on_finding(on_finding)
    min_severity = check_min_severity(min_severity)  # type: ignore[assignment]
    sinks: list[TensorBoardStream | WandbStream] = []
    if wandb is not None:
        sinks.append(WandbStream(wandb))
    if tensorboard is not None:
        sinks.append(TensorBoardStream(tensorboard))
    w = Watch(
        model,
        optimizer,
        run_dir,
        every=every,
        sample_every=sample_every,
        dense_steps=dense_steps,
        flush_every=flush_every,
        overwrite=overwrite,
        scaler=scaler,
        activations=activations,
        meta=meta,
        strict=strict,
        step_begin=step_begin,
        overhead=overhead,
    )
    for sink in sinks:
        w.add_flush_listener(sink)
    w.add_flush_listener(LiveDiagnosis(on_finding, min_severity=min_severity, sinks=sinks))
    for sink in sinks:
        if isinstance(sink, TensorBoardStream):
            w.add_flush_listener(_close_when_final(sink))
    return w


def _close_when_final(stream: TensorBoardStream) -> Any:
    """A listener closing the stream's own writer at the last flush (after the findings)."""

    def close(watch: Watch, flush: Flush) -> None:
        if flush.final:
            stream.close()

    return close
