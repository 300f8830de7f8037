"""Streaming: per-layer scalars and findings to TensorBoard or wandb at each flush.

A stream is a flush listener. It writes the per-layer values at the flush's sampled steps
(every ``sample_every``-th step and each of the first ``dense_steps``; the per-step scalars
at every step), which keeps a 1,000-layer model's stream to a tenth of a second per flush. It
assembles the flush's own tables into a small Trace (the
trace schema's ``trace_from_tables``) and takes its rows from
:func:`gradwatch.trace.tags.step_rows`, the function ``gradwatch export tensorboard`` uses,
so the live tags are the export's tags (``grad_rms/L03 encoder.layer.1``, depth zero-padded:
dashboards sort tags as text, so the layers come in depth order).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..diagnosis import Finding
from ..recording import Flush, Watch
from ..trace import Trace, trace_from_tables
from ..trace.tags import step_rows, write_summaries

#: The per-layer metrics streamed: the gradient's flow along depth, the real update size,
#: the two activation failures (dead units, saturation), and the share of each output that
#: still differs between inputs (a representation collapsing toward one output for every
#: input, what ``loss_plateau`` names as a collapse).
STREAM_METRICS: tuple[str, ...] = (
    "grad_rms",
    "update_ratio",
    "act_dead",
    "act_saturated",
    "act_between_inputs",
)
#: The per-step scalars streamed (the user's own, like the loss, they log themselves).
STREAM_SCALARS: tuple[str, ...] = ("global_grad_norm",)
#: Tag of the findings text.
FINDINGS_TAG = "gradwatch/findings"


def _rows(watch: Watch, flush: Flush) -> dict[int, list[tuple[str, float]]]:
    """The flush's rows: per-layer values at its sampled steps, the scalars at every step.

    Per-layer values at every step would be ``layers`` x 100 values per flush (100,000 for
    1,000 layers: over a second of protobuf work per flush); at the sampled steps (every
    ``sample_every``-th, and each of the first ``dense_steps``) they cost a tenth of that,
    and the full series stays in the run directory (``gradwatch export tensorboard``).
    """
    trace = _window_trace(watch, flush)
    config = trace.config
    every = max(int(config.get("sample_every", 1) or 1), 1)
    dense = int(config.get("dense_steps", 0) or 0)
    steps = trace.steps
    sampled = steps[(steps < dense) | (steps % every == 0)]
    return step_rows(trace, STREAM_METRICS, scalars=STREAM_SCALARS, layer_steps=sampled)


def _window_trace(watch: Watch, flush: Flush) -> Trace:
    by_kind: dict[str, list[Any]] = {"layers": [], "scalars": [], "recurrent": []}
    for kind, table in flush.tables:
        by_kind[kind].append(table)
    return trace_from_tables(
        watch._meta("running"), by_kind["layers"], by_kind["scalars"], by_kind["recurrent"]
    )


def findings_markdown(step: int, findings: list[Finding]) -> str:
    """The findings as a short Markdown list (TensorBoard's text plugin renders it)."""
    if not findings:
        return f"No findings at step {step}."
    lines = [f"Findings at step {step}:", ""]
    for f in findings:
        layers = ", ".join(f.shown_layers[:3]) or "whole run"
        lines.append(f"- **{f.severity}** `{f.rule}` ({layers}): {f.message}")
    return "\n".join(lines)


class TensorBoardStream:
    """Writes each flush's per-layer scalars (and the findings) to a TensorBoard log.

    Args:
        target: A log directory (a ``SummaryWriter`` is made there and closed with the
            watch) or your own ``torch.utils.tensorboard.SummaryWriter`` (left open).

    Raises:
        ImportError: When ``tensorboard`` is not installed.
        TypeError: When ``target`` is neither a path nor a SummaryWriter.
    """

    def __init__(self, target: str | os.PathLike[str] | Any) -> None:
        if isinstance(target, (str, os.PathLike)):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError(
                    "gw.watch(..., tensorboard=LOGDIR) needs the tensorboard package, which is "
                    'not installed. Install it with `pip install "gradwatch[tensorboard]"`.'
                ) from exc
            # Made at the first flush: a watch that fails to start leaves no log directory.
            self._make: Callable[[], Any] | None = lambda: SummaryWriter(
                log_dir=str(Path(target)), max_queue=4096
            )
            self._writer: Any = None
        elif callable(getattr(target, "add_text", None)) and callable(
            getattr(target, "_get_file_writer", None)
        ):
            self._writer = target
            self._make = None
        else:
            raise TypeError(
                f"Expected argument `tensorboard` to be a log directory or a "
                f"torch.utils.tensorboard.SummaryWriter but got {type(target).__name__}. Pass "
                "e.g. `tensorboard='tb/run1'`."
            )

    @property
    def writer(self) -> Any:
        """The SummaryWriter written to."""
        if self._writer is None and self._make is not None:
            self._writer = self._make()
        return self._writer

    def __call__(self, watch: Watch, flush: Flush) -> None:
        write_summaries(self.writer._get_file_writer(), _rows(watch, flush))
        self.writer.flush()

    def write_findings(self, step: int, findings: list[Finding]) -> None:
        """Write the findings of a check as text at ``step``."""
        self.writer.add_text(FINDINGS_TAG, findings_markdown(step, findings), step)
        self.writer.flush()

    def close(self) -> None:
        """Close the writer if this stream made it (the diagnosis's last findings are in)."""
        if self._make is not None and self._writer is not None:
            self._writer.close()
            self._writer = None


class WandbStream:
    """Logs each flush's per-layer scalars (and the findings) through ``run.log``.

    gradwatch's values carry their own step axis, ``gradwatch/step`` (declared with
    ``run.define_metric`` when the run has it), so they never clash with the steps of your
    own ``run.log`` calls.

    Args:
        run: A wandb run (``wandb.init(...)``), or any object with a ``log(dict)`` method.

    Raises:
        TypeError: When ``run`` has no ``log`` method.
    """

    STEP_KEY = "gradwatch/step"

    def __init__(self, run: Any) -> None:
        if not callable(getattr(run, "log", None)):
            raise TypeError(
                f"Expected argument `wandb` to be a wandb run (from `wandb.init()`) but got "
                f"{type(run).__name__}, which has no `log` method. Pass e.g. "
                "`wandb=wandb.init(project='my-project')`."
            )
        self.run = run
        define = getattr(run, "define_metric", None)
        if callable(define):
            define(self.STEP_KEY)
            keys = [f"{m}/*" for m in STREAM_METRICS] + [*STREAM_SCALARS, FINDINGS_TAG]
            for key in keys:
                define(key, step_metric=self.STEP_KEY)

    def __call__(self, watch: Watch, flush: Flush) -> None:
        for step, values in _rows(watch, flush).items():
            self.run.log({self.STEP_KEY: step, **dict(values)})

    def write_findings(self, step: int, findings: list[Finding]) -> None:
        """Log the findings of a check as text at ``step``."""
        self.run.log({self.STEP_KEY: step, FINDINGS_TAG: findings_markdown(step, findings)})
