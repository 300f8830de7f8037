"""What every study returns, and the helpers they share.

A study module defines ``NAME``, ``CITATION``, ``CLAIM``, ``CRITERION`` (the tolerance,
written before any run) and ``run(size) -> StudyOutcome``. ``size="test"`` is a few-second
version the tests run (it must still show the direction of the effect); ``size="full"`` is
the CPU-sized reproduction (<= 2 minutes on 2 cores).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from gradwatch.report.console import progress
from gradwatch.trace import Trace

from ..config import RunConfig
from ..runner import RunResult, run, with_seed
from ..tasks import make_task

Size = Literal["test", "full"]
SIZES: tuple[str, ...] = ("test", "full")


@dataclass(frozen=True)
class StudyOutcome:
    """A study's claim beside what was measured, and whether it held.

    Attributes:
        name, citation, claim, criterion: From the study module (criterion = tolerance).
        measured: One or two sentences with the measured numbers.
        held: Whether the criterion was met.
        numbers: The measured values by condition (means, per-seed values).
        size: ``"test"`` or ``"full"``.
        seeds: Seeds run per condition.
        seconds: Wall time of the study.
    """

    name: str
    citation: str
    claim: str
    criterion: str
    measured: str
    held: bool
    numbers: dict[str, Any] = field(default_factory=dict)
    size: str = "full"
    seeds: int = 1
    seconds: float = 0.0

    def render(self) -> str:
        """A plain-text block: claim, criterion, measured, verdict."""
        verdict = "HELD" if self.held else "DID NOT HOLD"
        return (
            f"== {self.name}: {self.citation}\n"
            f"claim:     {self.claim}\n"
            f"criterion: {self.criterion}\n"
            f"measured:  {self.measured}\n"
            f"verdict:   {verdict}  ({self.seeds} seeds, size={self.size}, "
            f"{self.seconds:.1f} s)\n"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def seeds_for(size: Size, test: int = 2, full: int = 3) -> list[int]:
    """The seeds a study runs at ``size``."""
    if size not in SIZES:
        raise ValueError(f"size={size!r}: use one of {list(SIZES)}")
    return list(range(test if size == "test" else full))


def run_seeds(config: RunConfig, seeds: Sequence[int]) -> list[RunResult]:
    """Train ``config`` once per seed, in memory (studies keep no run dirs).

    The task data is built once: its own seed fixes it, the run seed varies the model.
    """
    task = make_task(config.task, config.task_config)
    results = []
    # A bar over every step of every seed (N/M steps, time left), when a person watches.
    total = len(seeds) * config.steps
    with progress(f"{config.name or 'study'}: {len(seeds)} seeds", total, transient=True) as bar:
        for k, seed in enumerate(seeds):
            on_step = bar.step_callback(k * config.steps) if bar.active else None
            results.append(run(with_seed(config, seed), task=task, progress=on_step))
    return results


def trace_of(result: RunResult) -> Trace:
    """The trace a run recorded (every in-memory run keeps it; a loaded result.json does not)."""
    if result.trace is None:
        raise ValueError(f"run {result.name!r} holds no trace; run it, or gw.load its run dir")
    return result.trace


def variant(config: RunConfig, **changes: Any) -> RunConfig:
    """``config`` with some fields changed (the model's own fields via ``model=``)."""
    return replace(config, **changes)


def mean(values: Iterable[float]) -> float:
    """The mean, NaN-aware (a diverged run's NaN does not hide the others)."""
    arr = np.asarray(list(values), dtype=float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


@dataclass(frozen=True)
class AddingRace:
    """Recurrent models trained alike on the adding problem (hochreiter1997, le2015)."""

    seq_len: int
    trivial: float  # test MSE of always predicting 1 (~0.167)
    mse: dict[str, float]  # model name -> mean test MSE over seeds
    per_seed: dict[str, list[float]]  # model name -> test MSE of each seed
    seeds: int


def adding_race(models: dict[str, Any], size: Size, remedies: tuple[str, ...] = ()) -> AddingRace:
    """Train each recurrent model config on the adding problem, same seeds, Adam lr 0.01.

    T = 20 and 300 steps for ``size="test"``, T = 40 and 600 steps at full size.
    """
    from ..tasks import AddingConfig

    seeds = seeds_for(size, test=1, full=3)
    T, steps = (20, 300) if size == "test" else (40, 600)
    task = AddingConfig(seq_len=T, n_train=2000, n_test=500)
    results = {}
    for name, model in models.items():
        config = RunConfig(
            model=model, task="adding", task_config=task, optimizer="adam", lr=0.01,
            steps=steps, remedies=remedies, sample_every=50,
        )  # fmt: skip
        results[name] = run_seeds(config, seeds)
    first = next(iter(results.values()))
    return AddingRace(
        seq_len=T,
        trivial=first[0].baseline,
        mse={k: mean(r.test_metric for r in v) for k, v in results.items()},
        per_seed={k: [r.test_metric for r in v] for k, v in results.items()},
        seeds=len(seeds),
    )


def adding_race_study(
    study: tuple[str, str, str, str],
    winner: tuple[str, str, Any],
    size: Size,
    remedies: tuple[str, ...] = (),
) -> StudyOutcome:
    """The adding-problem race of hochreiter1997 and le2015: ``winner`` (key, label, model
    config) against a tanh RNN trained alike. Holds when the winner's mean test MSE is at
    most half the trivial error and the tanh RNN's at least 0.8 of it.

    Args:
        study: (name, citation, claim, criterion) of the study.
        winner: (result key, label in the measured text, RecurrentConfig).
        size: ``"test"`` or ``"full"``.
        remedies: Remedy ids applied to both models (le2015 clips both).
    """
    from ..models import RecurrentConfig

    name, citation, claim, criterion = study
    key, label, config = winner

    def build() -> StudyOutcome:
        race = adding_race(
            {key: config, "rnn_tanh": RecurrentConfig(cell="rnn_tanh", hidden=32)},
            size,
            remedies=remedies,
        )
        trivial, mse = race.trivial, race.mse
        held = mse[key] <= 0.5 * trivial and mse["rnn_tanh"] >= 0.8 * trivial
        return StudyOutcome(
            name, citation, claim, criterion,
            measured=(
                f"T={race.seq_len}: test MSE {label} {mse[key]:.4f}, "
                f"tanh RNN {mse['rnn_tanh']:.4f} (trivial {trivial:.3f})"
            ),
            held=held,
            numbers={"trivial": trivial, **race.per_seed},
            size=size,
            seeds=race.seeds,
        )  # fmt: skip

    return timed(build)


def timed(build: Callable[[], StudyOutcome]) -> StudyOutcome:
    """Run ``build`` and stamp the wall time into its outcome."""
    started = time.perf_counter()
    outcome = build()
    return replace(outcome, seconds=time.perf_counter() - started)


def markdown_table(outcomes: Sequence[StudyOutcome]) -> str:
    """The claim-vs-measured table of ``docs/studies.md``."""
    lines = [
        "| study | claim | criterion (set before the run) | measured | held | time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for o in outcomes:
        cells = [
            f"`{o.name}` ({o.citation})",
            o.claim,
            o.criterion,
            o.measured,
            "yes" if o.held else "**no**",
            f"{o.seconds:.0f} s ({o.seeds} seeds)",
        ]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def studies_page(outcomes: Sequence[StudyOutcome], machine: str = "") -> str:
    """The whole ``docs/studies.md`` page: how it was made, the table, each study's numbers."""
    import platform

    import torch

    total = sum(o.seconds for o in outcomes)
    sizes = sorted({o.size for o in outcomes})
    lines = [
        "# Studies: published results reproduced at CPU size",
        "",
        "Each study states a paper's claim, a criterion (tolerance) written in its module "
        "before the run, runs a small version over several seeds with the lab, and says "
        "whether the claim held. This page is generated; do not edit it by hand:",
        "",
        "```",
        "gradwatch lab study --all --size full --markdown docs/studies.md",
        "```",
        "",
        f"Generated with size={'/'.join(sizes)}, torch {torch.__version__}, Python "
        f"{platform.python_version()}, {torch.get_num_threads()} torch thread(s)"
        + (f", {machine}" if machine else "")
        + f"; total {total:.0f} s. Times are wall-clock and include the machine's other load.",
        "",
        markdown_table(outcomes),
        "A study that did not hold is reported as measured, not tuned until it passes; the "
        "notes below say what we think differs from the paper's setting.",
        "",
        "## Notes",
        "",
    ]
    from . import STUDIES

    for o in outcomes:
        note = getattr(STUDIES[o.name], "NOTES", "")
        if note:
            lines += [f"- `{o.name}`: {note}", ""]
    return "\n".join(lines)
