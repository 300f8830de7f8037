"""The measured per-layer gradient growth of a random deep tanh net matches mean-field chi_1,
and the order/chaos boundary sits where it predicts (Schoenholz et al., 2017)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from gradwatch.recording import watch
from gradwatch.theory import chi_1

from ..models import MLP, MLPConfig
from .base import Size, StudyOutcome, seeds_for, timed

NAME = "schoenholz2017"
CITATION = "Schoenholz, Gilmer, Ganguli & Sohl-Dickstein, ICLR 2017, arXiv:1611.01232"
CLAIM = (
    "In a random deep tanh network (W ~ N(0, sigma_w^2/N), b ~ N(0, sigma_b^2)) the squared "
    "back-propagated gradient changes by chi_1 = sigma_w^2 E[tanh'(h)^2] per layer (h at the "
    "variance fixed point q*): it vanishes for chi_1 < 1 (order), explodes for chi_1 > 1 "
    "(chaos), and the boundary chi_1 = 1 is the trainability edge."
)
CRITERION = (
    "tanh MLP, width 256, 24 layers, sigma_b = 0.05, sigma_w in {0.8, 1.0, 1.2, 1.5, 2.0, 2.5}, "
    "3 seeds: the measured per-layer factor of ||dL/dh||^2 (geometric mean over layers 8-22) is "
    "within 15% of chi_1 at every sigma_w, and the sigma_w where it crosses 1 (log-linear "
    "interpolation) is within 0.1 of the predicted critical sigma_w."
)
SIGMA_B = 0.05

#: Where the predicted chi_1 comes from (named in the measured text).
SOURCE = "gradwatch.theory"

NOTES = (
    "chi_1 comes from gradwatch.theory (the tests check it against the linear regime and a "
    "Monte Carlo estimate). The measured factor is a geometric mean over layers 8-22 of one "
    "backward pass on a Gaussian batch, recorded by gw.watch."
)


def chi_1_tanh(sigma_w: float, sigma_b: float = SIGMA_B) -> float:
    """chi_1 of a tanh net at (sigma_w, sigma_b), from ``gradwatch.theory.chi_1``."""
    return float(chi_1("tanh", sigma_w, sigma_b))


def measure_factor(
    sigma_w: float, *, width: int, depth: int, seed: int, skip: int, batch: int = 128
) -> float:
    """The per-layer factor of ||dL/dh||^2 in one random net, recorded by ``gw.watch``."""
    torch.manual_seed(seed)
    model = MLP(MLPConfig(depth=depth, width=width, activation="tanh"), width, 1)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, sigma_w / math.sqrt(layer.in_features))
                layer.bias.normal_(0.0, SIGMA_B)
    x = torch.randn(batch, width)  # q_0 = 1 at the first pre-activation (sigma_w-scaled)
    # Every step sampled, whatever it costs (overhead=None): the study reads each of them.
    with watch(model, sample_every=1, overhead=None) as w:
        model(x).sum().backward()
        w.step()
    grads = w.trace.matrix("out_grad_norm")[0, :-1] ** 2  # (hidden layers,), input side first
    ratios = grads[skip:-1] / grads[skip + 1 :]
    return float(np.exp(np.mean(np.log(ratios))))


def _crossing(sigmas: list[float], values: list[float]) -> float:
    """Where ``values`` crosses 1, by linear interpolation of log(value) in sigma_w."""
    logs = np.log(values)
    for i in range(len(sigmas) - 1):
        if logs[i] <= 0 < logs[i + 1]:
            t = -logs[i] / (logs[i + 1] - logs[i])
            return float(sigmas[i] + t * (sigmas[i + 1] - sigmas[i]))
    return float("nan")


def _root(f: Callable[[float], float], lo: float, hi: float) -> float:
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < 1 else (lo, mid)
    return 0.5 * (lo + hi)


def run(size: Size = "full") -> StudyOutcome:
    """Measure the gradient factor across weight scales and compare with chi_1."""

    def build() -> StudyOutcome:
        seeds = seeds_for(size, test=1, full=3)
        width, depth, skip = (64, 12, 4) if size == "test" else (256, 24, 8)
        sigmas = [0.8, 1.2, 2.0] if size == "test" else [0.8, 1.0, 1.2, 1.5, 2.0, 2.5]

        def factor(sigma_w: float) -> float:  # geometric mean over seeds
            logs = [
                math.log(measure_factor(sigma_w, width=width, depth=depth, seed=s, skip=skip))
                for s in seeds
            ]
            return math.exp(sum(logs) / len(logs))

        measured = [factor(s) for s in sigmas]
        predicted = [chi_1_tanh(s) for s in sigmas]
        rel = [abs(m / p - 1) for m, p in zip(measured, predicted, strict=True)]
        edge_pred = _root(chi_1_tanh, 0.5, 3.0)
        edge_meas = _crossing(sigmas, measured)
        held = max(rel) <= 0.15 and abs(edge_meas - edge_pred) <= 0.1
        pairs = ", ".join(
            f"{s:g}: {m:.2f} vs {p:.2f}"
            for s, m, p in zip(sigmas, measured, predicted, strict=True)
        )
        return StudyOutcome(
            NAME, CITATION, CLAIM, CRITERION,
            measured=(
                f"sigma_w: measured vs chi_1 ({SOURCE}) {pairs}; largest gap "
                f"{100 * max(rel):.0f}%; boundary sigma_w {edge_meas:.3f} measured vs "
                f"{edge_pred:.3f} predicted"
            ),
            held=held,
            numbers={
                "sigma_w": sigmas, "measured": measured, "predicted": list(predicted),
                "edge_measured": edge_meas, "edge_predicted": edge_pred, "source": SOURCE,
            },
            size=size,
            seeds=len(seeds),
        )  # fmt: skip

    return timed(build)
