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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _docs
from real_corpus.cases import REAL_CORPUS, Case, Run, record

import gradwatch as gw

SCRIPT = "benchmarks/warmup_effect.py"
COLUMNS = (
    "case",
    "warm-up steps",
    "loss: first, max, last 10%",
    "broken, by its own check",
    "findings (warning, critical)",
    "first remedy",
    "s",
)
#: Block name -> the header cells of the tables it holds (tests/docs/test_generated.py).
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {"": [COLUMNS]}

#: The corpus's cases that start too fast, each with the warm-up lengths tried (0 = none).
RUNS: dict[str, tuple[int, ...]] = {
    "postln_transformer_no_warmup": (0, 15, 50),
    "resnet50_small_images": (0, 30, 100),
    "gpt2_lr_too_high": (0, 20, 60),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-docs", action="store_true", help="update docs/remedies.md")
    args = parser.parse_args()
    rows = []
    for name, lengths in RUNS.items():
        for warmup in lengths:
            rows.append(row(name, warmup, args.seed))
            print("| " + " | ".join(rows[-1]) + " |", flush=True)
    if args.write_docs:
        setting = (
            f"each real-corpus case trained by its own loop (one thread, seed {args.seed}) "
            "without and with lr_warmup; 'by its own check' is the corpus's test that the case "
            "is broken, computed from the loop's losses, never from gradwatch (it tests what "
            "the case was built to show, not that the run is good); the first remedy is "
            "gw.prescribe's (trace's layer table)"
        )
        head = _docs.header(f"PYTHONPATH=src python {SCRIPT} --write-docs", setting + ".")
        root = Path(__file__).resolve().parents[1]
        body = f"{head}\n\n{_docs.table(COLUMNS, rows)}"
        _docs.replace_block(root / "docs" / "remedies.md", SCRIPT, body)
        print("updated docs/remedies.md")


if __name__ == "__main__":
    main()
