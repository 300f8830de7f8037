"""Break many Hugging Face architectures on purpose and see whether the diagnosis says so.

``architecture_sweep.py`` trains 36 architectures healthy, a net for false alarms; this is
its twin for misses, every real failure being what the rules are for: eight of them, one of
each family (a mixture-of-experts LM, a soft-capped LM, a recurrent and a state-space LM,
an encoder, a vision transformer, CNNs with BatchNorm and with LayerNorm), each trained as
there (the corpus's loop and data, 200 steps, one CPU thread, seed 0, ``gw.watch`` at its
fixed spacing) with one classic fault at a time:

- ``lr_too_high``: AdamW at 0.1 (the healthy runs use 1e-3); said if any warning or
  critical is drawn.
- ``lr_too_low``: AdamW at 1e-7; said if a finding offers ``raise_lr`` first.
- ``never_zeroed``: ``optimizer.zero_grad()`` never called; said if ``exploding_gradient``
  names the loop (``never_zeroed`` in its evidence).
- ``large_init``: every Linear and Embedding weight re-drawn from N(0, 1), what HF's
  ``initializer_range=1.0`` does (50x its default); said if ``poor_initialization``
  is drawn.
- ``softmax_into_ce``: ``cross_entropy`` of the softmax of the logits; said if the
  diagnosis notes that it applies log-softmax itself.
- ``nll_of_logits``: ``nll_loss`` of the raw logits; said if the diagnosis notes that
  the loss applies NLLLoss to what is no log-probability (named in the loss's graph, or
  read from a logged loss below 0).
- ``eval_mode``: trained with ``model.eval()``, where the model has BatchNorm (otherwise
  eval mode changes nothing a loss can see: "n/a"); said if a note or finding says its
  BatchNorm layers normalise with running statistics.
- ``weight_decay_10``: AdamW's weight decay at 10 (the weights shrink 1% a step); said if
  ``collapsing_weights`` is drawn.
- ``random_labels``: each batch's targets shuffled among its examples (no gradient
  problem: what is left to learn is the labels' frequencies); said if the loss plateau
  points at the data ("what the model is asked to learn", "what this data allows").

Each cell gives the run's own loss (first 5 steps' mean -> last 20's, the independent
measure of the damage), the findings that said it and any other warning or critical;
"MISSED" where the expected words are absent.

Run: ``PYTHONPATH=src python benchmarks/fault_sweep.py [--only ARCH ...] [--faults F ...]
[--write-docs]`` (about five minutes on one core). ``--write-docs`` writes the table into
docs/diagnosis.md's generated block (benchmarks/_docs.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _docs
from architecture_sweep import ARCHITECTURES
from real_corpus.cases import Case, record
from real_corpus.checks import Run, learns, loss_change
from real_corpus.models import Setup, ce_pixels

SCRIPT = "benchmarks/fault_sweep.py"
#: One architecture of each family the healthy sweep covers.
CHOSEN = (
    "mixtral",
    "gemma2",
    "rwkv",
    "falcon_mamba",
    "distilbert",
    "dinov2",
    "regnet",
    "convnextv2",
)


def _logits(setup: Setup, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's logits for ``batch``, flattened to (N, C), and its targets (N,)."""
    x, y = batch
    out = setup.model(pixel_values=x) if setup.loss is ce_pixels else setup.model(x)
    logits = out if isinstance(out, torch.Tensor) else out.logits
    return logits.reshape(-1, logits.shape[-1]), y.reshape(-1)


def _rate(lr: float) -> Callable[[Setup], Setup]:
    def fault(setup: Setup) -> Setup:
        for group in setup.optimizer.param_groups:
            group["lr"] = lr
        return setup

    return fault


def _weight_decay(setup: Setup) -> Setup:
    for group in setup.optimizer.param_groups:
        group["weight_decay"] = 10.0  # AdamW's decoupled decay: x (1 - 1e-3 x 10) a step
    return setup


def _random_labels(setup: Setup) -> Setup:
    """Each batch's targets shuffled among its examples (tokens, for an LM): the same
    labels, no longer the inputs'."""
    gen = torch.Generator().manual_seed(1)

    def batches(step: int) -> Any:
        x, y = setup.batches(step)
        flat = y.reshape(-1)
        return x, flat[torch.randperm(len(flat), generator=gen)].view_as(y)

    return dataclasses.replace(setup, batches=batches)


def _never_zeroed(setup: Setup) -> Setup:
    return dataclasses.replace(setup, zero_grad=False)


def _eval_mode(setup: Setup) -> Setup | None:
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in setup.model.modules())
    return dataclasses.replace(setup, eval_mode=True) if has_bn else None


def _large_init(setup: Setup) -> Setup:
    with torch.no_grad():
        for module in setup.model.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.normal_(0.0, 1.0)
    return setup


def _loss(of_logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[..., Setup]:
    def fault(setup: Setup) -> Setup:
        def loss(model: nn.Module, batch: Any) -> torch.Tensor:
            return of_logits(*_logits(setup, batch))

        return dataclasses.replace(setup, loss=loss)

    return fault


#: What says a fault: a run -> the words that said it (a rule, a note), or None.
Said = Callable[[Run], str | None]


def _rules(run: Run, test: Callable[[Any], bool]) -> str | None:
    """The rules (with severity) of the findings that pass ``test``, or None for none."""
    said = sorted({f"{f.rule.replace('_', ' ')} ({f.severity})" for f in run.findings if test(f)})
    return ", ".join(said) or None


def _said(words: str) -> Said:
    def check(run: Run) -> str | None:
        if any(words in note for note in getattr(run.findings, "notes", ())):
            return "a note"
        return _rules(run, lambda f: words in f.message)

    return check


#: Fault -> (what it does to a set-up, None where it does not apply; what says it).
FAULTS: dict[str, tuple[Callable[[Setup], Setup | None], Said]] = {
    "lr_too_high": (_rate(0.1), lambda run: _rules(run, lambda f: f.severity != "info")),
    "lr_too_low": (
        _rate(1e-7),
        lambda run: _rules(run, lambda f: bool(f.remedies) and f.remedies[0].id == "raise_lr"),
    ),
    "never_zeroed": (
        _never_zeroed,
        lambda run: _rules(run, lambda f: bool(f.evidence.get("never_zeroed"))),
    ),
    "large_init": (_large_init, lambda run: _rules(run, lambda f: f.rule == "poor_initialization")),
    "softmax_into_ce": (
        _loss(lambda z, y: F.cross_entropy(z.softmax(-1), y)),
        _said("applies log-softmax itself"),
    ),
    "nll_of_logits": (_loss(F.nll_loss), _said("applies NLLLoss (F.nll_loss) to")),
    "eval_mode": (_eval_mode, _said("running statistics")),
    "weight_decay_10": (
        _weight_decay,
        lambda run: _rules(run, lambda f: f.rule == "collapsing_weights"),
    ),
    "random_labels": (
        _random_labels,
        lambda run: _rules(
            run,
            lambda f: (
                f.rule == "loss_plateau"
                and ("asked to learn" in f.message or "this data allows" in f.message)
            ),
        ),
    ),
}
COLUMNS = ("architecture", *FAULTS)
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {"": [COLUMNS]}


def _build(name: str, fault: str, seed: int) -> Setup:
    setup = FAULTS[fault][0](ARCHITECTURES[name][1](seed, None))
    if setup is None:
        raise LookupError(fault)
    return setup


def _cell(name: str, fault: str) -> tuple[str, bool | None]:
    """One run's cell (its loss and what was said) and whether the fault was said (None:
    the fault does not apply to this model)."""
    case = Case(name, fault, partial(_build, name, fault), learns())
    try:
        run = record(case)
    except LookupError:
        return "n/a", None
    said = FAULTS[fault][1](run)
    loss = loss_change(run)
    alarms = _rules(run, lambda f: f.severity != "info")
    if said is None:
        return f"{loss}: **MISSED** ({alarms or 'no warning'})", False
    others = [a for a in (alarms or "").split(", ") if a and a not in said.split(", ")]
    return f"{loss}: {said}" + (f"; also {', '.join(others)}" if others else ""), True


def sweep(names: list[str], faults: list[str]) -> tuple[list[list[str]], int, int]:
    """Run every fault on every architecture; print and return the table's rows, the faults
    said and the runs where one applied."""
    rows, said, ran = [], 0, 0
    for name in names:
        row = [name]
        for fault in faults:
            t0 = time.perf_counter()
            cell, ok = _cell(name, fault)
            row.append(cell)
            ran += ok is not None
            said += bool(ok)
            print(f"{name:14s} {fault:16s} {time.perf_counter() - t0:5.1f} s  {cell}")
        rows.append(row)
    return rows, said, ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(ARCHITECTURES), default=None)
    parser.add_argument("--faults", nargs="+", choices=list(FAULTS), default=None)
    parser.add_argument("--write-docs", action="store_true", help="update docs/diagnosis.md")
    args = parser.parse_args()
    if args.write_docs and (args.only or args.faults):
        parser.error("--write-docs writes the whole table: run every architecture and fault")
    faults = args.faults or list(FAULTS)
    rows, said, ran = sweep(args.only or list(CHOSEN), faults)
    print(f"\n{said} of {ran} faults said")
    if args.write_docs:
        note = f"One CPU thread, 200 steps each. {said} of {ran} faults said."
        _docs.write_table("docs/diagnosis.md", SCRIPT, note, COLUMNS, rows)


if __name__ == "__main__":
    main()
