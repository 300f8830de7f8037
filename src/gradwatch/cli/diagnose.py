"""``gradwatch diagnose RUN_DIR``: run the diagnosis rules on a recorded run.

Exit status: 0 when no finding reaches ``--fail-on`` (default: never fail), 1 when one does,
so the command can gate a training pipeline; 2 for a run dir that cannot be read.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._options import add_format

_LEVELS = ("info", "warning", "critical")


def register(subparsers: Any) -> None:
    """Add the ``diagnose`` sub-command."""
    p = subparsers.add_parser(
        "diagnose",
        help="explain what a recorded run's gradients say (vanishing, exploding, ...)",
        description=(
            "Run gradwatch's diagnosis rules on a run directory written by gw.watch and print "
            "the findings, most severe first."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="directory given to gw.watch(run_dir=...)")
    add_format(p)
    p.add_argument(
        "--fail-on",
        choices=("warning", "critical"),
        default=None,
        help="exit with status 1 when a finding at or above this severity is present",
    )
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="RULE.NAME=VALUE",
        help="override a threshold, e.g. dead_units.warn_fraction=0.3 (repeatable)",
    )
    p.set_defaults(func=run)


def _parse_overrides(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(
                f"--threshold {item!r} is not RULE.NAME=VALUE; e.g. dead_units.warn_fraction=0.3"
            )
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--threshold {item!r}: {value!r} is not a number") from None
    return out


def run(args: argparse.Namespace) -> int:
    """Load the run, diagnose it, print the findings; 1 when --fail-on is met."""
    from gradwatch.diagnosis import SEVERITY_RANK, diagnose
    from gradwatch.trace import load

    trace = load(args.run_dir)
    findings = diagnose(trace, _parse_overrides(args.threshold))
    if args.format == "json":
        body = {
            "run_dir": str(args.run_dir),
            "layers": len(trace.layers),
            "steps": len(trace.steps),
            "findings": [f.to_json() for f in findings],
            "notes": list(findings.notes),
        }
        print(json.dumps(body, indent=2, allow_nan=False))
    else:
        from gradwatch.report.console import print_findings

        about = f"{len(trace.layers)} layers, {len(trace.steps)} steps"
        print_findings(findings, about=about, trace=trace)
    if args.fail_on is not None:
        bar = SEVERITY_RANK[args.fail_on]
        if any(SEVERITY_RANK[f.severity] >= bar for f in findings):
            return 1
    return 0
