"""He initialisation lets a 30-layer ReLU net learn where Xavier init stalls (He et al., 2015)."""

from __future__ import annotations

from ..config import RunConfig
from ..models import MLPConfig
from .base import Size, StudyOutcome, mean, run_seeds, seeds_for, timed

NAME = "he2015"
CITATION = "He, Zhang, Ren & Sun, ICCV 2015, arXiv:1502.01852"
CLAIM = (
    "A 30-layer ReLU network initialised with Xavier/Glorot scaling barely learns, while the "
    "same network with He initialisation (Var(W) = 2/fan_in) learns."
)
CRITERION = (
    "30-layer ReLU MLP on digits, SGD with momentum, same seeds: mean test accuracy with He "
    "init >= Xavier's + 0.30, and Xavier's <= chance + 0.25."
)


def run(size: Size = "full") -> StudyOutcome:
    """Train the Xavier- and He-initialised nets over several seeds and compare."""

    def build() -> StudyOutcome:
        seeds = seeds_for(size)
        width = 16 if size == "test" else 64
        results = {}
        for init in ("xavier", "he"):
            config = RunConfig(
                model=MLPConfig(depth=30, width=width, activation="relu", init=init),
                task="digits",
                optimizer="momentum",
                lr=0.01,
                steps=60 if size == "test" else 300,
                sample_every=50,
            )
            results[init] = run_seeds(config, seeds)
        chance = results["he"][0].baseline
        acc = {k: mean(r.test_metric for r in v) for k, v in results.items()}
        ratio = {k: mean(r.grad_ratio for r in v) for k, v in results.items()}
        held = acc["he"] >= acc["xavier"] + 0.30 and acc["xavier"] <= chance + 0.25
        per_seed = {k: [r.test_metric for r in v] for k, v in results.items()}
        return StudyOutcome(
            NAME, CITATION, CLAIM, CRITERION,
            measured=(
                f"test accuracy {acc['xavier']:.3f} (Xavier) vs {acc['he']:.3f} (He), chance "
                f"{chance:.3f}; first/last grad RMS {ratio['xavier']:.1e} vs {ratio['he']:.2f}"
            ),
            held=held,
            numbers={"chance": chance, **per_seed},
            size=size,
            seeds=len(seeds),
        )  # fmt: skip

    return timed(build)
