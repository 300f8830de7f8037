"""``gradwatch theory``: mean-field predictions for a deep random network."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ._options import add_format


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "theory",
        help="predict vanishing/exploding gradients from activation and init (mean field)",
        description=(
            "Mean-field predictions (Poole et al. 2016, Schoenholz et al. 2017) for a deep "
            "fully connected network with W ~ N(0, sigma_w^2 / fan_in), b ~ N(0, sigma_b^2): "
            "the variance fixed point q*, chi_1 (the per-layer factor of the mean squared "
            "gradient), the depth scale, the trainable depth and the critical sigma_w."
        ),
    )
    p.add_argument(
        "--activation",
        required=True,
        help="sigmoid, tanh, relu, leaky_relu, elu, selu, swish, gelu or linear",
    )
    p.add_argument(
        "--sigma-w",
        type=float,
        required=True,
        help=(
            "weight std multiplier, W ~ N(0, sigma_w^2/fan_in) (He init for ReLU: 1.414); "
            "not the variance"
        ),
    )
    p.add_argument("--sigma-b", type=float, default=0.0, help="bias standard deviation (default 0)")
    p.add_argument("--depth", type=int, default=50, help="number of layers to predict over")
    add_format(p)
    p.set_defaults(func=run)


def _num(x: float) -> str:
    if math.isinf(x):
        return "inf"
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.4g}"
    return f"{x:.3e}"


def run(args: argparse.Namespace) -> int:
    from gradwatch.theory import critical_sigma_w, mean_field

    if args.depth < 1:
        raise ValueError(f"--depth must be >= 1, got {args.depth}")
    r = mean_field(args.activation, args.sigma_w, args.sigma_b)
    try:
        critical: float | None = critical_sigma_w(args.activation, args.sigma_b)
        critical_note = ""
    except ValueError as exc:
        critical, critical_note = None, str(exc)
    ratio = r.gradient_ratio(args.depth)
    norm = r.norm_ratio(args.depth)
    if args.format == "json":
        out: dict[str, Any] = r.to_dict()
        out.update(
            depth=args.depth,
            gradient_ratio=ratio,
            norm_ratio=norm,
            critical_sigma_w=critical,
            critical_note=critical_note or None,
        )
        print(json.dumps(out, indent=2, default=str))
        return 0
    verdict = {
        "ordered": "ordered phase: gradients vanish with depth",
        "critical": "critical: gradients keep their size",
        "chaotic": "chaotic phase: gradients explode with depth",
    }[r.phase]
    q = "grows without bound" if math.isinf(r.q_star) else _num(r.q_star)
    lines = [
        f"Mean field: {r.activation}, sigma_w = {_num(r.sigma_w)} "
        f"(W ~ N(0, sigma_w^2/fan_in)), sigma_b = {_num(r.sigma_b)}",
        f"  variance fixed point q*       {q}",
        f"  chi_1 = sigma_w^2 E[phi'^2]   {_num(r.chi_1)}   ({verdict})",
        f"  per-layer gradient-norm gain  {_num(math.sqrt(r.chi_1))}",
        f"  depth scale xi                {_num(r.depth_scale)} layers",
        f"  trainable depth ~ 6 xi        {_num(r.trainable_depth)} layers",
        f"  {f'after {args.depth} layers':<30}mean squared gradient x {_num(ratio)}, "
        f"norm x {_num(norm)}",
    ]
    if r.phase == "chaotic":
        lines.append(f"  correlation fixed point c*    {_num(r.c_star)}")
    if critical is not None:
        lines.append(
            f"  critical sigma_w (chi_1 = 1)  {_num(critical)} at sigma_b = {_num(r.sigma_b)}"
        )
    else:
        lines.append(f"  critical sigma_w              none: {critical_note}")
    print("\n".join(lines))
    return 0
