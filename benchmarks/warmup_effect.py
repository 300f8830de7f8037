"""Measure what the ``lr_warmup`` remedy does to the real corpus's cases that start too fast.

Each case is trained by the corpus's own loop (``real_corpus.cases.record``: one thread, the
case's seed, recorded by ``gw.watch``) without a warm-up and with ``lr_warmup`` over a few
lengths, and the table says what its own check (independent of gradwatch) and the diagnosis
saw. Run: ``PYTHONPATH=src python benchmarks/warmup_effect.py [--write-docs]`` (about five
minutes on one core: the ResNet-50 runs take ~80 s each). ``--write-docs`` writes the table
into docs/remedies.md's generated block (benchmarks/_docs.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _docs
from real_corpus.cases import REAL_CORPUS, Case, Run, record

import gradwatch as gw

T = TypeVar("T")

SCRIPT = "benchmarks/warmup_effect.py"


def columns(setting: str) -> tuple[str, ...]:
    """A real-corpus effect table's header: the case, ``setting`` (what was varied), then
    the cells of :func:`measured`."""
    return (
        "case",
        setting,
        "loss: first, max, last 10%",
        "broken, by its own check",
        "findings (warning, critical)",
        "first remedy",
        "s",
    )


COLUMNS = columns("warm-up steps")
#: Block name -> the header cells of the tables it holds (tests/docs/test_generated.py).
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {"": [COLUMNS]}

#: The corpus's cases that start too fast, each with the warm-up lengths tried (0 = none).
RUNS: dict[str, tuple[int, ...]] = {
    "postln_transformer_no_warmup": (0, 15, 50),
    "resnet50_small_images": (0, 30, 100),
    "gpt2_lr_too_high": (0, 20, 60),
    "resnet_lr_too_high": (0, 20),
}


def measured(case: Case, run: Run) -> list[str]:
    """The cells after a row's first two: the loss, the case's own check, the findings, the
    first remedy prescribed and the seconds (shared with benchmarks/lower_lr_effect.py)."""
    broken, detail = case.check(run)
    tail = max(1, case.steps // 10)
    losses = run.losses
    serious = [f.rule for f in run.findings if f.severity != "info"]
    prescribed = gw.prescribe(run.findings, trace=run.trace)
    return [
        f"{losses[0]:.3g}, {max(losses):.3g}, {sum(losses[-tail:]) / tail:.3g}",
        ("yes: " if broken else "no: ") + detail,
        ", ".join(serious) or "none",
        prescribed[0].remedy if prescribed else "-",
        f"{run.seconds:.0f}",
    ]


def row(name: str, warmup: int, seed: int) -> list[str]:
    case = REAL_CORPUS[name]
    run = record(case, seed, warmup=warmup)
    return [f"{name} ({case.steps} steps)", str(warmup or "none"), *measured(case, run)]


def write_table(
    script: str,
    description: str | None,
    columns: Sequence[str],
    runs: Mapping[str, Sequence[T]],
    *,
    row: Callable[[str, T, int], list[str]],
    setting: Callable[[int], str],
) -> None:
    """The command line of a real-corpus effect table (this script, lower_lr_effect.py): one
    ``row(case, setting, seed)`` per case and setting of ``runs``, printed as it comes; with
    ``--write-docs`` the table, under the shared header saying ``setting(seed)``, goes into
    docs/remedies.md's block of ``script``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-docs", action="store_true", help="update docs/remedies.md")
    args = parser.parse_args()
    rows = []
    for name, settings in runs.items():
        for value in settings:
            rows.append(row(name, value, args.seed))
            print("| " + " | ".join(rows[-1]) + " |", flush=True)
    if args.write_docs:
        command = f"PYTHONPATH=src python {script} --write-docs"
        head = _docs.header(command, setting(args.seed) + ".")
        root = Path(__file__).resolve().parents[1]
        body = f"{head}\n\n{_docs.table(columns, rows)}"
        _docs.replace_block(root / "docs" / "remedies.md", script, body)
        print("updated docs/remedies.md")


def main() -> None:
    write_table(
        SCRIPT,
        __doc__,
        COLUMNS,
        RUNS,
        row=row,
        setting=lambda seed: (
            f"each real-corpus case trained by its own loop (one thread, seed {seed}) "
            "without and with lr_warmup; 'by its own check' is the corpus's test that the case "
            "is broken, computed from the loop's losses, never from gradwatch (it tests what "
            "the case was built to show, not that the run is good); the first remedy is "
            "gw.prescribe's (trace's layer table)"
        ),
    )


if __name__ == "__main__":
    main()
