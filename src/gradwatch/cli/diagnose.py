"""``gradwatch diagnose RUN_DIR``: run the diagnosis rules on a recorded run.

Exit status: 0 when no finding reaches ``--fail-on`` (default: never fail), 1 when one does,
so the command can gate a training pipeline; 2 for a run dir that cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

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
    p.add_argument(
        "--format",
        choices=("human", "json"),
        default="human",
        help="human-readable report (default) or JSON for machines",
    )
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
        }
        print(json.dumps(body, indent=2, allow_nan=False))
    else:
        _print_human(trace, findings)
    if args.fail_on is not None:
        bar = SEVERITY_RANK[args.fail_on]
        if any(SEVERITY_RANK[f.severity] >= bar for f in findings):
            return 1
    return 0


def _print_human(trace: Any, findings: list[Any]) -> None:
    """A short report: with rich when installed (colour, panels), plain text otherwise."""
    head = f"{len(trace.layers)} layers, {len(trace.steps)} steps"
    try:
        from rich.console import Console
    except ImportError:
        _print_plain(head, findings)
        return
    console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    if not findings:
        console.print(f"[green]No findings[/green] ({head}): the gradients look healthy.")
        return
    colour = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
    console.print(f"[bold]{len(findings)} finding(s)[/bold] ({head}), most severe first:\n")
    for f in findings:
        where = ", ".join(f.layers[:4]) + (" ..." if len(f.layers) > 4 else "")
        steps = f"steps {f.steps[0]}-{f.steps[1]}" if f.steps else "whole run"
        console.print(
            f"[{colour[f.severity]}]{f.severity.upper()}[/] [bold]{f.rule}[/bold]"
            f"  ({steps}{'; ' + where if where else ''})"
        )
        console.print(f"  {f.message}")
        if f.remedies:
            console.print("  Try:")
            for i, r in enumerate(f.remedies[:3], 1):
                console.print(f"    {i}. [bold]{r.id}[/bold]: {r.reason}")
        console.print()


def _print_plain(head: str, findings: list[Any]) -> None:
    if not findings:
        print(f"No findings ({head}): the gradients look healthy.")
        return
    print(f"{len(findings)} finding(s) ({head}), most severe first:\n")
    for f in findings:
        where = ", ".join(f.layers[:4]) + (" ..." if len(f.layers) > 4 else "")
        steps = f"steps {f.steps[0]}-{f.steps[1]}" if f.steps else "whole run"
        print(f"{f.severity.upper()} {f.rule}  ({steps}{'; ' + where if where else ''})")
        print(f"  {f.message}")
        if f.remedies:
            print("  Try:")
            for i, r in enumerate(f.remedies[:3], 1):
                print(f"    {i}. {r.id}: {r.reason}")
        print()
