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
            "fully connected network with W ~ N(0, sigma_w^2 / fan_in), b ~ N(0, sigma_b^2), "
            "given as standard deviations (--sigma-w, --sigma-b) or as variances "
            "(--sigma-w2, --sigma-b2): "
            "the variance fixed point q*, chi_1 (the per-layer factor of the mean squared "
            "gradient), the depth scale, the trainable depth and the critical sigma_w."
        ),
    )
    p.add_argument(
        "--activation",
        required=True,
        help="sigmoid, tanh, relu, leaky_relu, elu, selu, swish, gelu or linear",
    )
    # One meaning per flag: --sigma-w/--sigma-b are standard deviations (gradwatch.theory's
    # convention), --sigma-w2/--sigma-b2 the variances papers often quote; one of each pair.
    p.add_argument(
        "--sigma-w",
        type=float,
        help=(
            "weight standard-deviation multiplier, W ~ N(0, sigma_w^2/fan_in) (He init for "
            "ReLU: 1.414); give this or --sigma-w2"
        ),
    )
    p.add_argument(
        "--sigma-w2",
        type=float,
        help="weight variance multiplier sigma_w^2 (He init for ReLU: 2); instead of --sigma-w",
    )
    p.add_argument(
        "--sigma-b", type=float, help="bias standard deviation, b ~ N(0, sigma_b^2) (default 0)"
    )
    p.add_argument(
        "--sigma-b2", type=float, help="bias variance sigma_b^2 (default 0); instead of --sigma-b"
    )
    p.add_argument("--depth", type=int, default=50, help="number of layers to predict over")
    add_format(p)
    p.set_defaults(func=run)


def _num(x: float) -> str:
    if math.isinf(x):
        return "inf"
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.4g}"
    return f"{x:.3e}"


def standard_deviation(
    name: str, std: float | None, variance: float | None, default: float | None
) -> float:
    """The standard deviation given either as ``--NAME`` (itself) or ``--NAME2`` (its square).

    Raises ``ValueError`` naming both flags when both or (without a default) neither is given,
    and for a negative variance.
    """
    flag = f"--{name.replace('_', '-')}"
    if std is not None and variance is not None:
        raise ValueError(
            f"{flag} {std!r} (a standard deviation) and {flag}2 {variance!r} (a variance) "
            f"were both given; pass one: {flag} {math.sqrt(abs(variance)):.6g} is the "
            f"same as {flag}2 {variance!r}"
        )
    if variance is not None:
        if not variance >= 0:
            raise ValueError(f"{flag}2 is a variance and must be >= 0, got {variance!r}")
        return math.sqrt(variance)
    if std is not None:
        return std
    if default is None:
        raise ValueError(f"give {flag} (standard deviation) or {flag}2 (variance), e.g. {flag} 1.0")
    return default


def run(args: argparse.Namespace) -> int:
    from gradwatch.theory import critical_sigma_w, mean_field

    if args.depth < 1:
        raise ValueError(f"--depth must be >= 1, got {args.depth}")
    sigma_w = standard_deviation("sigma_w", args.sigma_w, args.sigma_w2, None)
    sigma_b = standard_deviation("sigma_b", args.sigma_b, args.sigma_b2, 0.0)
    r = mean_field(args.activation, sigma_w, sigma_b)
    try:
        critical: float | None = critical_sigma_w(args.activation, sigma_b)
        critical_note = ""
    except ValueError as exc:
        critical, critical_note = None, str(exc)
    ratio = r.gradient_ratio(args.depth)
    norm = r.norm_ratio(args.depth)
    if args.format == "json":
        out: dict[str, Any] = r.to_dict()
        out.update(
            sigma_w2=r.sigma_w**2,
            sigma_b2=r.sigma_b**2,
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
        f"Mean field: {r.activation}, sigma_w = {_num(r.sigma_w)} (std; sigma_w^2 = "
        f"{_num(r.sigma_w**2)}, W ~ N(0, sigma_w^2/fan_in)), sigma_b = {_num(r.sigma_b)} "
        f"(std; sigma_b^2 = {_num(r.sigma_b**2)})",
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
            f"  critical sigma_w (chi_1 = 1)  {_num(critical)} (sigma_w^2 = {_num(critical**2)}) "
            f"at sigma_b = {_num(r.sigma_b)}"
        )
    else:
        lines.append(f"  critical sigma_w              none: {critical_note}")
    print("\n".join(lines))
    return 0
