"""Export a trace to TensorBoard event files, so users can keep their usual dashboard.

Written with TensorBoard's own writer (``torch.utils.tensorboard.SummaryWriter``; needs the
``tensorboard`` package: ``pip install "gradwatch[tensorboard]"``). Tags:

- ``<metric>/L<depth> <layer>``: every per-layer metric as a scalar, at the steps it was
  measured (``grad_rms/L00 net.0`` ...; the depth zero-padded so tags sort in depth order,
  :func:`gradwatch.trace.tags.layer_tags`, the same tags ``gw.watch(..., tensorboard=...)``
  streams). Missing values are not written (never as 0).
- ``<scalar>``: the per-step scalars (``loss``, ``global_grad_norm``, ``skipped`` ...).
- ``across_layers/<metric>``: a histogram per step of the metric over the layers, of
  ``log10`` of the value for the norm-like metrics (their spread spans decades).
- ``memory_horizon/L<depth> <layer>``: for recurrent layers, the memory horizon in input steps at
  each sampled step (:func:`gradwatch.report.figures.recurrent_memory.memory_horizon`, as the
  memory plot draws it); not written when the gradient never falls below the threshold
  within the sequence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from gradwatch.trace import Trace
from gradwatch.trace.tags import layer_tags, step_rows, write_summaries

from .figures.recurrent_memory import memory_horizon

__all__ = ["LOG10_METRICS", "export_tensorboard"]

#: Metrics whose histogram across layers is of log10(value): they are positive and spread
#: over orders of magnitude, so a linear histogram would put every layer but one in bin 0.
LOG10_METRICS: frozenset[str] = frozenset(
    {"grad_norm", "grad_rms", "grad_max", "weight_norm", "update_ratio", "out_grad_norm"}
)

_INSTALL_HINT = 'pip install "gradwatch[tensorboard]"'
_HIST_BINS = 30


def _summary_writer(logdir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ImportError(
            "gradwatch's TensorBoard export needs the tensorboard package, which is not "
            f"installed. Install it with `{_INSTALL_HINT}`."
        ) from exc
    # A deep queue: the default (10) makes every add block on the writer thread.
    return SummaryWriter(log_dir=str(logdir), max_queue=4096, flush_secs=60)


def export_tensorboard(
    trace: Trace | str | os.PathLike[str],
    logdir: str | os.PathLike[str],
    *,
    histograms: bool = True,
    max_histogram_steps: int = 500,
    horizon_threshold: float = 1e-3,
) -> Path:
    """Write a trace's per-layer scalars and histograms as TensorBoard events in ``logdir``.

    Args:
        trace: A Trace or a run directory.
        logdir: Directory for the event file (created if missing); point ``tensorboard
            --logdir`` at it or at its parent.
        histograms: Also write per-step histograms of each metric across layers.
        max_histogram_steps: Histograms are written at most at this many measured steps,
            spread evenly (TensorBoard keeps 500 histogram samples per tag by default).
        horizon_threshold: Relative level defining the recurrent memory horizon.

    Returns:
        ``logdir``.

    Raises:
        ImportError: When tensorboard is not installed.
        ValueError: When ``logdir`` is an existing file.

    Example:
        >>> from gradwatch.report import export_tensorboard
        >>> export_tensorboard("runs/exp1", "tb/exp1")  # doctest: +SKIP
        PosixPath('tb/exp1')
    """
    if not isinstance(trace, Trace):
        from gradwatch.trace import load

        trace = load(trace)
    out = Path(logdir)
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"Expected argument `logdir` to be a directory but {str(out)!r} is a file; pass a "
            "new or existing directory."
        )
    if max_histogram_steps < 1:
        raise ValueError(
            f"Expected argument `max_histogram_steps` to be at least 1 but got "
            f"{max_histogram_steps}."
        )
    writer = _summary_writer(out)
    try:
        names = layer_tags(trace)
        metrics = {m: trace.matrix(m) for m in trace.metrics}
        # The same rows, tags and order as the live stream (gradwatch.trace.tags).
        by_step = step_rows(trace)
        # The whole loss's horizon, and the last position's where it was recorded (a language
        # model's whole-loss profile is flat: only one position's loss shows its memory).
        tags = {"whole": "memory_horizon", "last_position": "memory_horizon_last_position"}
        column = {name: j for j, name in enumerate(trace.layer_names)}
        for layer in trace.recurrent_layers:
            for kind in trace.profile_kinds(layer):
                prof = trace.input_grad_profile(layer, kind)
                tag = f"{tags[kind]}/{names[column[layer]] if layer in column else layer}"
                for step, row in zip(prof.steps.tolist(), prof.values, strict=True):
                    h = memory_horizon(row[::-1], horizon_threshold)
                    if h is not None:
                        by_step.setdefault(int(step), []).append((tag, h))
        write_summaries(writer.file_writer, dict(sorted(by_step.items())))
        if histograms:
            for m, mat in metrics.items():
                rows = np.flatnonzero(np.any(np.isfinite(mat), axis=1))
                if len(rows) > max_histogram_steps:
                    pick = np.round(np.linspace(0, len(rows) - 1, max_histogram_steps))
                    rows = rows[pick.astype(np.int64)]
                for r in rows:
                    vals = mat[r][np.isfinite(mat[r])]
                    tag = f"across_layers/{m}"
                    if m in LOG10_METRICS:
                        vals = np.log10(vals[vals > 0])
                        tag = f"across_layers/log10_{m}"
                    if len(vals):
                        # 30 equal-width bins: enough for tens of layers, and ~20x faster than
                        # the ~770 exponential "tensorflow" bins.
                        writer.add_histogram(tag, vals, int(trace.steps[r]), bins=_HIST_BINS)
        config = json.dumps(
            {k: v for k, v in trace.meta.items() if k != "layers"}, indent=2, default=str
        )
        writer.add_text("gradwatch/meta", f"```\n{config}\n```", 0)
    finally:
        writer.close()
    return out
