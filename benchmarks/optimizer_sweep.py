"""Train healthy real models under every torch optimizer and see what the diagnosis says.

The corpus and the architecture sweep train with AdamW (the CNNs with SGD); users train with
all of ``torch.optim``, and several rules read the optimizer's steps (update ratios, weight
decay, the learning rate). This is the false-alarm net along that axis: six healthy corpus
cases (HF GPT-2 and Llama byte LMs, HF BERT and ViT classifiers, HF ResNet, an LSTM LM),
each trained by the corpus's own loop (200 steps, one CPU thread, seed 0, ``gw.watch`` at
its fixed spacing) with its optimizer replaced by one of 17, at the rate its users start
from. The independent check is the model's own loss: a byte LM has learned when its last 20
losses are under 0.95 x the unigram entropy of its data (below that, it reads context), a
classifier when they are under 0.7 x its first 5. A run that learned must draw no warning;
one that did not may (its cell says which rules).

Each cell: the loss (first 5 steps' mean -> last 20's), "not learned" where the check
fails, and the warnings and criticals drawn. ``LBFGS`` is not here: it needs a closure,
which the corpus loop does not pass (``tests/integrations/test_optimizers.py`` checks what
is recorded under it).

Run: ``PYTHONPATH=src python benchmarks/optimizer_sweep.py [--only CASE ...]
[--optimizers NAME ...] [--write-docs]`` (about five minutes on one core). ``--write-docs``
writes the table into docs/diagnosis.md's generated block (benchmarks/_docs.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _docs
from real_corpus.cases import REAL_CORPUS, record
from real_corpus.checks import Run, learns, loss_change, no_context_learned

SCRIPT = "benchmarks/optimizer_sweep.py"

Make = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
optim = torch.optim


def _hf_adafactor(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Hugging Face's Adafactor as its docs start it: relative steps, no learning rate."""
    from transformers.optimization import Adafactor

    return Adafactor(params, lr=None, relative_step=True, scale_parameter=True)  # type: ignore[no-any-return]


#: Optimizer -> how it is made (each at a rate its users start from).
OPTIMIZERS: dict[str, Make] = {
    "SGD 0.05, momentum 0.9": lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
    "SGD 0.05, Nesterov, wd 5e-4": lambda p: optim.SGD(
        p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
    ),
    "SGD 0.1": lambda p: optim.SGD(p, lr=0.1),
    "Adam 1e-3": lambda p: optim.Adam(p, lr=1e-3),
    "Adam 1e-3, L2 1e-4": lambda p: optim.Adam(p, lr=1e-3, weight_decay=1e-4),
    "Adam 1e-3, AMSGrad": lambda p: optim.Adam(p, lr=1e-3, amsgrad=True),
    "AdamW 1e-3, wd 0.1": lambda p: optim.AdamW(p, lr=1e-3, weight_decay=0.1),
    "NAdam 2e-3": lambda p: optim.NAdam(p, lr=2e-3),
    "RAdam 1e-3": lambda p: optim.RAdam(p, lr=1e-3),
    "Adamax 2e-3": lambda p: optim.Adamax(p, lr=2e-3),
    "Adagrad 1e-2": lambda p: optim.Adagrad(p, lr=1e-2),
    "RMSprop 1e-3": lambda p: optim.RMSprop(p, lr=1e-3),
    "RMSprop 1e-4, momentum 0.9": lambda p: optim.RMSprop(p, lr=1e-4, momentum=0.9),
    "Adadelta 1.0": lambda p: optim.Adadelta(p, lr=1.0),
    "Rprop 1e-3": lambda p: optim.Rprop(p, lr=1e-3),
    "Adafactor 1e-2": lambda p: optim.Adafactor(p, lr=1e-2),
    "HF Adafactor, relative step": _hf_adafactor,
}

#: Corpus case -> whether it learned (the model's own loss, never gradwatch's findings).
CASES: dict[str, Callable[[Run], bool]] = {
    "gpt2_lm": lambda run: not no_context_learned()(run)[0],
    "llama_lm": lambda run: not no_context_learned()(run)[0],
    "lstm_lm": lambda run: not no_context_learned()(run)[0],
    "bert_classifier": lambda run: learns()(run)[0],
    "vit_digits": lambda run: learns()(run)[0],
    "resnet_digits": lambda run: learns()(run)[0],
}
COLUMNS = ("optimizer", *CASES)
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {"": [COLUMNS]}


def _run(case_name: str, make: Make) -> Run:
    case = REAL_CORPUS[case_name]

    def build(seed: int) -> Any:
        setup = case.build(seed)
        return dataclasses.replace(setup, optimizer=make(setup.model.parameters()))

    return record(dataclasses.replace(case, build=build))


def _cell(case_name: str, optimizer: str) -> tuple[str, bool, bool]:
    """One run's cell, whether it learned, and whether it drew a warning or critical."""
    run = _run(case_name, OPTIMIZERS[optimizer])
    learned = CASES[case_name](run)
    alarms = sorted({f.rule for f in run.findings if f.severity != "info"})
    cell = loss_change(run)
    if not learned:
        cell += " (not learned)"
    if alarms:
        cell += ": " + ", ".join(alarms)
    return cell, learned, bool(alarms)


def sweep(cases: list[str], optimizers: list[str]) -> tuple[list[list[str]], list[str], int]:
    """Every optimizer on every case: the table's rows, the runs that learned and still
    drew an alarm, and how many learned."""
    rows, false_alarms, learned_runs = [], [], 0
    for optimizer in optimizers:
        row = [optimizer]
        for case_name in cases:
            t0 = time.perf_counter()
            cell, learned, alarmed = _cell(case_name, optimizer)
            row.append(cell)
            learned_runs += learned
            if learned and alarmed:
                false_alarms.append(f"{case_name} under {optimizer}")
            print(f"{optimizer:28s} {case_name:16s} {time.perf_counter() - t0:5.1f} s  {cell}")
        rows.append(row)
    return rows, false_alarms, learned_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(CASES), default=None)
    parser.add_argument("--optimizers", nargs="+", choices=list(OPTIMIZERS), default=None)
    parser.add_argument("--write-docs", action="store_true", help="update docs/diagnosis.md")
    args = parser.parse_args()
    if args.write_docs and (args.only or args.optimizers):
        parser.error("--write-docs writes the whole table: run every case and optimizer")
    rows, false_alarms, learned = sweep(
        args.only or list(CASES), args.optimizers or list(OPTIMIZERS)
    )
    summary = (
        f"{learned} of {len(rows) * len(rows[0][1:])} runs learned; "
        f"{len(false_alarms)} of those drew a warning"
        + (f" ({'; '.join(false_alarms)})" if false_alarms else "")
    )
    print("\n" + summary)
    if args.write_docs:
        note = f"One CPU thread, 200 steps each. {summary}."
        _docs.write_table("docs/diagnosis.md", SCRIPT, note, COLUMNS, rows)


if __name__ == "__main__":
    main()
