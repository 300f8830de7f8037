"""Batch normalisation lets a deep sigmoid MLP learn (Ioffe & Szegedy, 2015)."""

from __future__ import annotations

from ..config import RunConfig
from ..models import MLPConfig
from .base import Size, StudyOutcome, mean, run_seeds, seeds_for, timed, variant

NAME = "ioffe2015"
CITATION = "Ioffe & Szegedy, ICML 2015, arXiv:1502.03167"
CLAIM = (
    "A deep sigmoid network that does not learn trains once batch normalisation is "
    "inserted before each nonlinearity."
)
CRITERION = (
    "20-layer sigmoid MLP on digits, same seeds: mean test accuracy without BN <= chance + 0.10, "
    "with BN >= chance + 0.50."
)


def run(size: Size = "full") -> StudyOutcome:
    """Train the plain and the batch-normalised net over several seeds and compare."""

    def build() -> StudyOutcome:
        seeds = seeds_for(size)
        base = RunConfig(
            model=MLPConfig(depth=20, width=32 if size == "test" else 64, activation="sigmoid"),
            task="digits",
            optimizer="adam",
            lr=1e-3,
            steps=80 if size == "test" else 400,
            sample_every=50,
        )
        plain = run_seeds(base, seeds)
        bn = run_seeds(variant(base, remedies=("batchnorm",)), seeds)
        chance = plain[0].baseline
        acc_plain = mean(r.test_metric for r in plain)
        acc_bn = mean(r.test_metric for r in bn)
        held = acc_plain <= chance + 0.10 and acc_bn >= chance + 0.50
        return StudyOutcome(
            NAME, CITATION, CLAIM, CRITERION,
            measured=(
                f"test accuracy {acc_plain:.3f} without BN, {acc_bn:.3f} with BN "
                f"(chance {chance:.3f}); first/last grad RMS "
                f"{mean(r.grad_ratio for r in plain):.1e} -> {mean(r.grad_ratio for r in bn):.2f}"
            ),
            held=held,
            numbers={
                "chance": chance,
                "plain": [r.test_metric for r in plain],
                "batchnorm": [r.test_metric for r in bn],
            },
            size=size,
            seeds=len(seeds),
        )  # fmt: skip

    return timed(build)
