"""Greedy layer-wise pretraining helps a deep sigmoid network (Bengio et al., 2007)."""

from __future__ import annotations

from ..config import RunConfig
from ..models import MLPConfig
from .base import Size, StudyOutcome, mean, run_seeds, seeds_for, timed, variant

NAME = "bengio2007"
CITATION = (
    "Bengio, Lamblin, Popovici & Larochelle, NeurIPS 2006 (2007), 'Greedy layer-wise training'"
)
CLAIM = (
    "Greedy unsupervised layer-wise pretraining (auto-encoders, one layer at a time) followed "
    "by supervised fine-tuning beats the same deep sigmoid network trained from random init."
)
CRITERION = (
    "10-layer sigmoid MLP on digits, same fine-tuning steps and seeds: mean test accuracy with "
    "pretraining >= random init + 0.05."
)

NOTES = (
    "Pretraining is gradwatch.remedies.pretrain_layerwise (auto-encoders trained with Adam, "
    "one epoch of 150 batches of 64 per layer) when the remedies package is present, else "
    "the lab's own equivalent; fine-tuning is SGD with momentum 0.9, lr 0.1, 300 steps."
)


def run(size: Size = "full") -> StudyOutcome:
    """Fine-tune pretrained and randomly initialised nets over several seeds and compare."""

    def build() -> StudyOutcome:
        seeds = seeds_for(size, test=1, full=3)
        base = RunConfig(
            model=MLPConfig(depth=10, width=64, activation="sigmoid"),
            task="digits",
            optimizer="momentum",
            lr=0.1,
            steps=300,
            sample_every=50,
        )
        pretrain = variant(
            base,
            remedies=("layerwise_pretraining",),
            remedy_options={
                "layerwise_pretraining": {"steps_per_layer": 100 if size == "test" else 150}
            },
        )
        random_init, pretrained = run_seeds(base, seeds), run_seeds(pretrain, seeds)
        a_rand = mean(r.test_metric for r in random_init)
        a_pre = mean(r.test_metric for r in pretrained)
        return StudyOutcome(
            NAME, CITATION, CLAIM, CRITERION,
            measured=f"test accuracy {a_rand:.3f} from random init, {a_pre:.3f} pretrained",
            held=a_pre >= a_rand + 0.05,
            numbers={
                "random": [r.test_metric for r in random_init],
                "pretrained": [r.test_metric for r in pretrained],
            },
            size=size,
            seeds=len(seeds),
        )  # fmt: skip

    return timed(build)
