"""An identity-initialised ReLU RNN (IRNN) learns the adding problem where a tanh RNN does not
(Le, Jaitly & Hinton, 2015)."""

from __future__ import annotations

from ..config import RunConfig
from ..models import RecurrentConfig
from ..tasks import AddingConfig
from .base import Size, StudyOutcome, mean, run_seeds, seeds_for, timed

NAME = "le2015"
CITATION = "Le, Jaitly & Hinton, arXiv:1504.00941, 2015"
CLAIM = (
    "A ReLU RNN with the recurrent matrix initialised to the identity and zero biases (IRNN) "
    "learns the adding problem, where a tanh RNN trained the same way does not."
)
CRITERION = (
    "Adding problem, T = 40, hidden 32, Adam lr 0.01 with gradient-norm clipping at 1 for both "
    "(Le et al. clip too), 600 steps, same seeds: mean test MSE IRNN <= 0.5 x trivial, "
    "tanh RNN >= 0.8 x trivial."
)

NOTES = (
    "Two departures from the paper, both for the CPU budget: IRNN input weights N(0, 0.1^2) "
    "instead of N(0, 0.001) (RecurrentConfig.input_std), and Adam with clipping instead of "
    "SGD. In a trial run with 0.001 the IRNN was still at the trivial error (0.163) after 600 "
    "steps at T = 40, which says the budget is short, not that the claim fails."
)


def run(size: Size = "full") -> StudyOutcome:
    """Train an IRNN and a tanh RNN on the adding problem over several seeds."""

    def build() -> StudyOutcome:
        seeds = seeds_for(size, test=1, full=3)
        T, steps = (20, 300) if size == "test" else (40, 600)
        task = AddingConfig(seq_len=T, n_train=2000, n_test=500)
        models = {
            "irnn": RecurrentConfig(cell="rnn_relu", hidden=32, init="identity"),
            "rnn_tanh": RecurrentConfig(cell="rnn_tanh", hidden=32),
        }
        results = {}
        for name, model in models.items():
            config = RunConfig(
                model=model, task="adding", task_config=task, optimizer="adam", lr=0.01,
                steps=steps, remedies=("clip_norm",), sample_every=50,
            )  # fmt: skip
            results[name] = run_seeds(config, seeds)
        trivial = results["irnn"][0].baseline
        mse = {k: mean(r.test_metric for r in v) for k, v in results.items()}
        held = mse["irnn"] <= 0.5 * trivial and mse["rnn_tanh"] >= 0.8 * trivial
        per_seed = {k: [r.test_metric for r in v] for k, v in results.items()}
        return StudyOutcome(
            NAME, CITATION, CLAIM, CRITERION,
            measured=(
                f"T={T}: test MSE IRNN {mse['irnn']:.4f}, tanh RNN {mse['rnn_tanh']:.4f} "
                f"(trivial {trivial:.3f})"
            ),
            held=held,
            numbers={"trivial": trivial, **per_seed},
            size=size,
            seeds=len(seeds),
        )  # fmt: skip

    return timed(build)
