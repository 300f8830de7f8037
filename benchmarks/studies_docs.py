"""Run the lab's studies and write their claim-vs-measured table into docs/studies.md.

The table is the lab's own (``gradwatch.lab.studies.markdown_table``, what
``gradwatch lab study --all --markdown FILE`` writes as a standalone page); this script puts
it, with the shared header line (benchmarks/_docs.py), into the page's generated block, and
the studies' notes under it.

Run from the repository root (about 2.5 minutes at size full on one CPU thread):

    PYTHONPATH=src python benchmarks/studies_docs.py [--size full|test] [--write-docs]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gradwatch.lab import studies

# The shared writer of generated doc blocks, beside this file (also when imported by tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _docs

SCRIPT = "benchmarks/studies_docs.py"
#: The lab table's header cells, read from the lab's own writer.
COLUMNS = tuple(c.strip() for c in studies.markdown_table([]).splitlines()[0].strip("|").split("|"))
#: Block name -> the header cells of the tables it holds (tests/docs/test_generated.py).
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {"": [COLUMNS]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(studies.SIZES), default="full")
    parser.add_argument("--write-docs", action="store_true", help="update docs/studies.md")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # as `gradwatch lab study`: one thread
    started = time.perf_counter()
    outcomes = []
    for name in studies.STUDIES:
        outcome = studies.run_study(name, size=args.size)
        print(outcome.render(), flush=True)
        outcomes.append(outcome)
    took = time.perf_counter() - started
    table = studies.markdown_table(outcomes)
    print(table)
    if args.write_docs:
        docs = _docs
        notes = []
        for o in outcomes:
            note = getattr(studies.STUDIES[o.name], "NOTES", "")
            if note:
                notes.append(f"- `{o.name}`: {note}")
        body = (
            docs.header(
                f"PYTHONPATH=src python {SCRIPT} --size {args.size} --write-docs",
                f"Size {args.size}, one torch thread; {took:.0f} s in all. Times are "
                "wall-clock and include the machine's other load.",
            )
            + f"\n\n{table}\n"
            + "A study that did not hold is reported as measured, not tuned until it passes; "
            "the notes say what we think differs from the paper's setting.\n\n### Notes\n\n"
            + "\n\n".join(notes)
        )
        docs.replace_block(
            Path(__file__).resolve().parents[1] / "docs" / "studies.md", SCRIPT, body
        )
        print("updated docs/studies.md")


if __name__ == "__main__":
    main()
