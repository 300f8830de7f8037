"""``gradwatch report RUN_DIR [RUN_DIR ...] --out report.html``: a self-contained HTML report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._options import TEXT_ALIAS_EPILOG, add_format


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of one or several runs",
        description=(
            "Write one HTML file with the verdict, the findings and their remedies, the plots, "
            "and the runs' configuration. Several runs get a comparison section. The file "
            "loads nothing from the network."
        ),
        epilog=TEXT_ALIAS_EPILOG,
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories to report")
    parser.add_argument(
        "--out", "-o", default="report.html", help="HTML file to write (default: report.html)"
    )
    parser.add_argument("--title", default=None, help="page title (default: names the runs)")
    parser.add_argument(
        "--label",
        action="append",
        default=None,
        metavar="NAME",
        help="name of each run in the report, once per RUN_DIR in order (default: dir names)",
    )
    parser.add_argument(
        "--chi1",
        type=float,
        default=None,
        metavar="CHI1",
        help=(
            "overlay the mean-field depth profile of this per-layer gain chi_1 on each run's "
            "gradient flow (e.g. from gradwatch.theory.chi_1(activation, sigma_w, sigma_b))"
        ),
    )
    add_format(parser, text_alias=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gradwatch.report.html import write_report
    from gradwatch.report.summary import run_diagnosis, summarize
    from gradwatch.trace import load

    traces = [load(d) for d in args.run_dirs]
    if args.label is not None and len(args.label) != len(traces):
        raise ValueError(
            f"got {len(args.label)} --label for {len(traces)} RUN_DIR; give one --label per "
            "run directory, in the same order, or none."
        )
    labels = args.label or [Path(d).resolve().name for d in args.run_dirs]
    # Diagnosed here once: the same findings go to the HTML and to the printed summary.
    per_run = [run_diagnosis(t) for t in traces]
    if args.chi1 is not None and not args.chi1 > 0:
        raise ValueError(f"Expected `--chi1` to be a positive number but got {args.chi1}.")
    # write_report takes the prediction itself for one run, a list (one per run) for several.
    predicted: float | list[float | None] | None = args.chi1
    if args.chi1 is not None and len(traces) > 1:
        predicted = [args.chi1] * len(traces)
    try:
        out = write_report(
            traces, args.out, per_run, args.title, labels=labels, predicted=predicted
        )
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot write the report to {str(args.out)!r}: {exc.strerror or exc}. Pass a "
            "writable --out.",
        ) from exc
    summaries = [summarize(t, f, lab) for t, f, lab in zip(traces, per_run, labels, strict=True)]
    if args.format == "json":
        body = {
            "out": str(out),
            "runs": [
                {
                    "label": s.label,
                    "run_dir": str(d),
                    "layers": s.n_layers,
                    "steps": s.n_steps,
                    "final_loss": s.final_loss,
                    "grad_span": s.grad_span,
                    "findings": s.counts if s.diagnosed else None,
                }
                for s, d in zip(summaries, args.run_dirs, strict=True)
            ],
        }
        json.dump(body, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from gradwatch.report.console import print_comparison

    print_comparison(summaries)
    print(f"wrote {out}")
    return 0
