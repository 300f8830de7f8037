"""Deeper plain nets train worse (degradation); residual connections fix it (He et al., 2016)."""

from __future__ import annotations

from ..config import RunConfig
from ..models import MLPConfig
from .base import Size, StudyOutcome, mean, run_seeds, seeds_for, timed

NAME = "he2016"
CITATION = "He, Zhang, Ren & Sun, CVPR 2016, arXiv:1512.03385"
CLAIM = (
    "A deeper plain network reaches a higher training loss than a shallower one (degradation, "
    "not overfitting); with residual connections the deeper network trains at least as well."
)
CRITERION = (
    "ReLU MLPs with He init and batch norm on digits, same steps and seeds, final training "
    "loss (mean over seeds): plain deep > 1.25 x plain shallow, and residual deep <= 1.10 x "
    "plain shallow + 0.01."
)

NOTES = (
    "The first full run used post-activation residual blocks (Linear -> BN -> ReLU inside the "
    "skip) and did not hold: residual 40 layers ended at training loss 3.588 against 0.048 for "
    "plain 6 layers, because every block added a non-negative ReLU output and the residual "
    "stream grew with depth. He et al.'s branches end in a linear layer before the addition; "
    "the lab's residual MLP now uses pre-activation blocks x + W ReLU(BN(x)) (He et al., "
    "'Identity mappings', 2016), and this row is the rerun with the criterion unchanged."
)


def run(size: Size = "full") -> StudyOutcome:
    """Train shallow plain, deep plain and deep residual nets over several seeds."""

    def build() -> StudyOutcome:
        seeds = seeds_for(size)
        shallow, deep = (4, 24) if size == "test" else (6, 40)
        width = 16 if size == "test" else 64

        def config(depth: int, residual: bool) -> RunConfig:
            model = MLPConfig(
                depth=depth, width=width, activation="relu", init="he", norm="batchnorm",
                residual=residual,
            )  # fmt: skip
            return RunConfig(
                model=model, task="digits", optimizer="momentum", lr=0.01,
                steps=80 if size == "test" else 300, sample_every=50,
            )  # fmt: skip

        runs = {
            f"plain-{shallow}": run_seeds(config(shallow, False), seeds),
            f"plain-{deep}": run_seeds(config(deep, False), seeds),
            f"residual-{deep}": run_seeds(config(deep, True), seeds),
        }
        loss = {k: mean(r.final_loss for r in v) for k, v in runs.items()}
        ps, pd, rd = loss[f"plain-{shallow}"], loss[f"plain-{deep}"], loss[f"residual-{deep}"]
        held = pd > 1.25 * ps and rd <= 1.10 * ps + 0.01
        return StudyOutcome(
            NAME, CITATION, CLAIM, CRITERION,
            measured=(
                f"final training loss: plain {shallow} layers {ps:.3f}, plain {deep} layers "
                f"{pd:.3f}, residual {deep} layers {rd:.3f}"
            ),
            held=held,
            numbers={k: [r.final_loss for r in v] for k, v in runs.items()},
            size=size,
            seeds=len(seeds),
        )  # fmt: skip

    return timed(build)
