"""Measure what the ``lower_lr`` remedy does to the real corpus's cases whose rate is too high.

Each case is trained by the corpus's own loop (``real_corpus.cases.record``: one thread, the
case's seed, recorded by ``gw.watch``) at its own rate and with ``lower_lr`` at a few
factors, and the table says what its own check (independent of gradwatch) and the diagnosis
saw. Run: ``PYTHONPATH=src python benchmarks/lower_lr_effect.py [--write-docs]`` (about
seven minutes on one core: the ResNet-50 runs take ~150 s each). ``--write-docs`` writes the table into docs/remedies.md's generated
block (benchmarks/_docs.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_corpus.cases import REAL_CORPUS, record
from warmup_effect import columns, measured, write_table

SCRIPT = "benchmarks/lower_lr_effect.py"
COLUMNS = columns("rate factor")
#: Block name -> the header cells of the tables it holds (tests/docs/test_generated.py).
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {"": [COLUMNS]}

#: The corpus's cases whose rate is too high, each with the factors tried (1 = as built).
RUNS: dict[str, tuple[float, ...]] = {
    "gpt2_lr_too_high": (1.0, 0.1, 0.01),
    "gpt2_warmup_too_short": (1.0, 0.1, 0.01),
    "resnet50_small_images": (1.0, 0.1),
    "resnet_lr_too_high": (1.0, 0.1),
}


def row(name: str, factor: float, seed: int) -> list[str]:
    case = REAL_CORPUS[name]
    run = record(case, seed, lr_factor=None if factor == 1.0 else factor)
    label = "1 (as built)" if factor == 1.0 else f"{factor:g}"
    return [f"{name} ({case.steps} steps)", label, *measured(case, run)]


def main() -> None:
    write_table(
        SCRIPT,
        __doc__,
        COLUMNS,
        RUNS,
        row=row,
        setting=lambda seed: (
            f"each real-corpus case trained by its own loop (one thread, seed {seed}) at its "
            "rate and with lower_lr at each factor; 'by its own check' is the corpus's test "
            "that the case is broken, computed from the loop's losses, never from gradwatch; "
            "the first remedy is gw.prescribe's (trace's layer table)"
        ),
    )


if __name__ == "__main__":
    main()
