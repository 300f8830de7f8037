"""SELU with LeCun-normal init keeps activations near mean 0, variance 1 through depth
(Klambauer et al., 2017)."""

from __future__ import annotations

import numpy as np

from .. import runner
from ..config import RunConfig
from ..models import MLPConfig
from ..tasks import Task, make_task
from .base import Size, StudyOutcome, seeds_for, timed, trace_of

NAME = "klambauer2017"
CITATION = "Klambauer, Unterthiner, Mayr & Hochreiter, NeurIPS 2017, arXiv:1706.02515"
CLAIM = (
    "A deep SELU network with LeCun-normal init (Var(W) = 1/fan_in) keeps its activations near "
    "mean 0 and variance 1 through depth (self-normalising); ReLU with the same init does not."
)
CRITERION = (
    "Deep MLP on standardised digits at initialisation, deepest hidden layer, mean over seeds: "
    "SELU |mean| <= 0.15 and std in [0.8, 1.2]; ReLU std outside [0.5, 2]."
)


def _stats(activation: str, depth: int, width: int, seed: int, task: Task) -> np.ndarray:
    """(layers, 2) activation mean and std per hidden layer at step 0."""
    config = RunConfig(
        model=MLPConfig(depth=depth, width=width, activation=activation, init="lecun"),
        task="digits",
        steps=1,
        lr=1e-6,  # one tiny step: the statistics are those of the initialised net
        batch_size=256,
        sample_every=1,
        seed=seed,
    )
    trace = trace_of(runner.run(config, task=task))
    mean, std = trace.matrix("act_mean")[0, :-1], trace.matrix("act_std")[0, :-1]
    return np.stack([mean, std], axis=1)


def run(size: Size = "full") -> StudyOutcome:
    """Measure activation mean and std through depth for SELU and ReLU."""

    def build() -> StudyOutcome:
        seeds = seeds_for(size, test=2, full=5)
        depth, width = (16, 64) if size == "test" else (32, 256)
        task = make_task("digits")
        stats = {
            act: np.mean([_stats(act, depth, width, s, task) for s in seeds], axis=0)
            for act in ("selu", "relu")
        }
        selu_mean, selu_std = (float(v) for v in stats["selu"][-1])
        relu_std = float(stats["relu"][-1, 1])
        held = abs(selu_mean) <= 0.15 and 0.8 <= selu_std <= 1.2 and not 0.5 <= relu_std <= 2
        return StudyOutcome(
            NAME, CITATION, CLAIM, CRITERION,
            measured=(
                f"layer {depth - 1} of {depth - 1}: SELU mean {selu_mean:+.3f}, std "
                f"{selu_std:.3f}; ReLU mean {float(stats['relu'][-1, 0]):+.2e}, std "
                f"{relu_std:.2e}"
            ),
            held=held,
            numbers={k: v.tolist() for k, v in stats.items()},
            size=size,
            seeds=len(seeds),
        )  # fmt: skip

    return timed(build)
