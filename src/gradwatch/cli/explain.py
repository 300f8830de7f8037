"""``gradwatch explain RUN_DIR``: the chain rule walked through a recorded gradient profile."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ._options import add_format


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "explain",
        help="walk the chain rule through a recorded run: where the gradient shrinks or grows",
        description=(
            "Reads a run directory and walks the recorded per-layer gradient profile "
            "(out_grad_norm = ||dL/d output|| when recorded, else grad_rms) from the last "
            "layer back to the first: the factor between consecutive layers, their running "
            "product, and where the gradient collapses."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by gw.watch")
    p.add_argument(
        "--step", type=int, default=None, help="training step (default: the first measured one)"
    )
    p.add_argument(
        "--metric",
        choices=("out_grad_norm", "grad_rms"),
        default=None,
        help="profile to walk (default: out_grad_norm if recorded, else grad_rms)",
    )
    add_format(p)
    p.set_defaults(func=run)


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x == 0 or 1e-2 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def _check_step(trace: Any, step: int, metric: str | None) -> None:
    """Refuse a ``--step`` the profile was not measured at, naming the nearest that were.

    The walk would otherwise quietly use the nearest measured step, and a reader of its
    first line could take it for the step they asked for.
    """
    import numpy as np

    candidates = [metric] if metric else ["out_grad_norm", "grad_rms"]
    for name in candidates:
        if not trace.has_metric(name):
            continue
        steps = trace.measured(name)[0]
        if len(steps) == 0:
            continue
        if step in steps:
            return
        order = np.argsort(np.abs(steps - step), kind="stable")[:3]
        nearest = ", ".join(str(int(s)) for s in sorted(steps[order]))
        raise ValueError(
            f"--step {step} was not recorded for {name} (measured at {len(steps)} steps, "
            f"{int(steps[0])}..{int(steps[-1])}). Nearest recorded: {nearest}; pass one of "
            "them, or leave --step out for the first."
        )
    # No profile at all: explain_trace says so itself.


def run(args: argparse.Namespace) -> int:
    from gradwatch.theory import explain_trace
    from gradwatch.trace import load

    trace = load(args.run_dir)
    if args.step is not None:
        _check_step(trace, args.step, args.metric)
    walk = explain_trace(trace, step=args.step, metric=args.metric)
    if args.format == "json":
        print(json.dumps(walk.to_dict(), indent=2))
        return 0
    # layers read L<depth> <name>, as in the findings, the report and the plots
    labels = [trace.layer_label(r.name) for r in walk.rows]
    width = max(5, *(len(s) for s in labels))
    # The forward side beside the backward one, where the trace recorded it.
    forward = any(r.between_inputs is not None for r in walk.rows)
    lines = [
        f"Chain-rule walk of {args.run_dir} at step {walk.step} ({walk.metric} per layer)",
        f"  {'layer':<{width}}  {'gradient':>10}  {'factor':>8}  {'vs last':>10}"
        + (f"  {'between inputs':>14}" if forward else ""),
    ]
    for r, label in zip(walk.rows, labels, strict=True):
        mark = "  <- collapsed" if walk.collapse_layer == r.index else ""
        between = f"  {_num(r.between_inputs):>14}" if forward else ""
        lines.append(
            f"  {label:<{width}}  {_num(r.grad_norm):>10}  "
            f"{_num(r.measured_gain):>8}  {_num(r.measured_ratio):>10}{between}{mark}"
        )
    lines.append("  (factor: gradient at this layer / at the next one; vs last: / at the last)")
    if forward:
        lines.append(
            "  (between inputs: share of the layer's output variance that differs between "
            "inputs; near 0, every input looks the same to the layers after it)"
        )
    lines.append("")
    lines.append(walk.sentence)
    print("\n".join(lines))
    return 0
