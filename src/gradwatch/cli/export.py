"""``gradwatch export tensorboard RUN_DIR LOGDIR``: the trace as TensorBoard event files."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._options import add_format


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a run to another tool's format (TensorBoard)",
        description="Export a recorded run so other tools can show it.",
    )
    targets = parser.add_subparsers(dest="target", metavar="{tensorboard}", required=True)
    tb = targets.add_parser(
        "tensorboard",
        help="per-layer scalars and histograms as TensorBoard event files",
        description=(
            "Write every per-layer metric as a scalar tag <metric>/<layer>, the per-step "
            "scalars, and per-step histograms across layers; then run "
            '`tensorboard --logdir LOGDIR`. Needs `pip install "gradwatch[tensorboard]"`.'
        ),
    )
    tb.add_argument("run_dir", metavar="RUN_DIR", help="run directory to export")
    tb.add_argument("logdir", metavar="LOGDIR", help="directory for the event file")
    tb.add_argument(
        "--no-histograms", action="store_true", help="write scalars only (faster, smaller)"
    )
    add_format(tb)
    tb.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gradwatch.report.tensorboard import export_tensorboard
    from gradwatch.trace import load

    trace = load(args.run_dir)  # a damaged run is its own error, not a write error
    try:
        out = export_tensorboard(trace, args.logdir, histograms=not args.no_histograms)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot write TensorBoard events to {str(args.logdir)!r}: {exc.strerror or exc}. "
            "Pass a writable LOGDIR.",
        ) from exc
    if args.format == "json":
        print(json.dumps({"run_dir": str(args.run_dir), "logdir": str(out)}, indent=2))
        return 0
    print(f"wrote TensorBoard events to {out}; view them with: tensorboard --logdir {out}")
    return 0
