"""The diagnosis corpus: small models broken (or healthy) by construction, trained and recorded.

Each entry builds a model whose pathology is known from how it is made, trains it for a few
hundred steps on one CPU thread with ``gw.watch`` (in memory), and runs ``gw.diagnose``. The
tests (``tests/diagnosis/test_corpus.py``) assert the expected findings; this script prints
the confusion table (which rules fired, at which severity, on which model) and rewrites the
generated part of ``docs/diagnosis.md``. It does the same for the real-architecture corpus
(``real_corpus/``: Hugging Face GPT-2/BERT/ViT/ResNet, word-language-model RNNs), whose
table goes to its own generated section.

Run: ``PYTHONPATH=src python benchmarks/diagnosis_corpus.py [--corpus toy|real|both]
[--write-docs] [--only NAME]``
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

import gradwatch as gw
from gradwatch.diagnosis import RULE_IDS, Finding
from gradwatch.trace import Trace

# The shared writer of generated doc blocks, beside this file (also when imported by tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _docs

Batch = tuple[torch.Tensor, torch.Tensor]


# ---------------------------------------------------------------------- data
def digits_batches(seed: int) -> Callable[[int], Batch]:
    """Standardised scikit-learn digits (8x8 images, 10 classes), random batches of 64."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)

    def batch(_: int) -> Batch:
        idx = torch.randint(0, len(xt), (64,), generator=gen)
        return xt[idx], yt[idx]

    return batch


def sequence_batches(length: int, seed: int) -> Callable[[int], Batch]:
    """Random sequences (T, B=32, 4); the label is the sign of the first input's first feature.

    The label depends on the input farthest from the loss (the last output), so a net with a
    short memory cannot learn it: the gradient reaching x_0 is what the rule measures.
    """
    gen = torch.Generator().manual_seed(seed)

    def batch(_: int) -> Batch:
        x = torch.randn(length, 32, 4, generator=gen)
        return x, (x[0, :, 0] > 0).long()

    return batch


class SeqClassifier(nn.Module):
    """A recurrent layer read out at the last time step."""

    def __init__(self, cell: nn.Module, hidden: int) -> None:
        super().__init__()
        self.rnn = cell
        self.head = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (T, B, H)
        return self.head(out[-1])  # (B, 2)


class Residual(nn.Module):
    """x + f(LayerNorm(x)): a pre-norm residual block."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)
        self.act = nn.ReLU()
        nn.init.kaiming_normal_(self.fc.weight, nonlinearity="relu")
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.fc(self.norm(x)))


def mlp(widths: list[int], act: type[nn.Module], init: Callable[[nn.Linear], None]) -> nn.Module:
    """Linear/activation stack; the last Linear has no activation."""
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        lin = nn.Linear(a, b)
        init(lin)
        mods.append(lin)
        if i < len(widths) - 2:
            mods.append(act())
    return nn.Sequential(*mods)


def normal_init(std_times_sqrt_fan_in: float, bias: float = 0.0) -> Callable[[nn.Linear], None]:
    """Weights N(0, (c / sqrt(fan_in))^2), constant bias."""

    def init(lin: nn.Linear) -> None:
        nn.init.normal_(lin.weight, 0.0, std_times_sqrt_fan_in / math.sqrt(lin.in_features))
        nn.init.constant_(lin.bias, bias)

    return init


def he_init(bias: float = 0.0) -> Callable[[nn.Linear], None]:
    def init(lin: nn.Linear) -> None:
        nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        nn.init.constant_(lin.bias, bias)

    return init


# ---------------------------------------------------------------------- corpus entries
@dataclass
class Case:
    """One corpus model: how to build and train it, and what the diagnosis must say."""

    name: str
    description: str
    build: Callable[[], tuple[nn.Module, torch.optim.Optimizer, Callable[[int], Batch]]]
    steps: int = 200
    expect: tuple[str, ...] = ()  # rules that must fire (warning or critical)
    healthy: bool = False  # no warning/critical finding allowed
    # Called before each step with (model, step): e.g. to inject a NaN.
    before_step: Callable[[nn.Module, int], None] | None = None
    # Expected first layer named by a rule: rule id -> layer name.
    expect_layer: dict[str, str] = field(default_factory=dict)


def _deep_sigmoid() -> tuple[nn.Module, torch.optim.Optimizer, Callable[[int], Batch]]:
    # Weights N(0, 16/fan_in) (4x LeCun), and the first layer N(0, (1.5)^2): its pre-activations
    # (std ~12) pin most of its units at 0 or 1.
    model = mlp([64] + [32] * 20 + [10], nn.Sigmoid, normal_init(4.0))
    nn.init.normal_(model[0].weight, 0.0, 1.5)
    return model, torch.optim.SGD(model.parameters(), lr=0.1), digits_batches(0)


def _deep_tanh_large() -> tuple[nn.Module, torch.optim.Optimizer, Callable[[int], Batch]]:
    # sigma_w = 4 puts a tanh net deep in the chaotic phase (Poole et al. 2016): each layer
    # multiplies the backward gradient by chi^(1/2) > 1. A small learning rate keeps it there.
    model = mlp([64] + [32] * 20 + [10], nn.Tanh, normal_init(4.0))
    return model, torch.optim.SGD(model.parameters(), lr=1e-3), digits_batches(1)


def _relu_negative_bias() -> tuple[nn.Module, torch.optim.Optimizer, Callable[[int], Batch]]:
    model = mlp([64, 64, 64, 64, 10], nn.ReLU, he_init(bias=-8.0))
    return model, torch.optim.SGD(model.parameters(), lr=0.05), digits_batches(2)


def _vanilla_rnn_long() -> tuple[nn.Module, torch.optim.Optimizer, Callable[[int], Batch]]:
    model = SeqClassifier(nn.RNN(4, 32, nonlinearity="tanh"), 32)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3), sequence_batches(60, 3)


def _lr_too_high() -> tuple[nn.Module, torch.optim.Optimizer, Callable[[int], Batch]]:
    # SGD at lr 10 (about 100x a workable rate for this net): each step changes a layer's
    # weights by tens of percent. Tanh, not ReLU, so the net oscillates instead of dying.
    model = mlp([64, 64, 64, 10], nn.Tanh, normal_init(1.0))
    return model, torch.optim.SGD(model.parameters(), lr=10.0), digits_batches(4)


def _nan_injected() -> tuple[nn.Module, torch.optim.Optimizer, Callable[[int], Batch]]:
    model = mlp([64, 64, 64, 64, 10], nn.ReLU, he_init())
    return model, torch.optim.SGD(model.parameters(), lr=0.05), digits_batches(5)


def _inject_nan(model: nn.Module, step: int) -> None:
    """At step 60, make the second Linear's weight gradient NaN (via a one-shot tensor hook)."""
    if step != 60:
        return
    lin = model[2]
    assert isinstance(lin, nn.Linear)
    handle = None

    def hook(g: torch.Tensor) -> torch.Tensor:
        assert handle is not None
        handle.remove()  # one shot
        g = g.clone()
        g[0, 0] = float("nan")
        return g

    handle = lin.weight.register_hook(hook)


def _weight_decay() -> tuple[nn.Module, torch.optim.Optimizer, Callable[[int], Batch]]:
    model = mlp([64, 64, 64, 10], nn.ReLU, he_init())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.3)
    return model, opt, digits_batches(6)


def _residual_healthy() -> tuple[nn.Module, torch.optim.Optimizer, Callable[[int], Batch]]:
    model = nn.Sequential(
        nn.Linear(64, 32),
        *[Residual(32) for _ in range(8)],
        nn.LayerNorm(32),
        nn.Linear(32, 10),
    )
    return model, torch.optim.Adam(model.parameters(), lr=1e-3), digits_batches(7)


def _lstm_short() -> tuple[nn.Module, torch.optim.Optimizer, Callable[[int], Batch]]:
    model = SeqClassifier(nn.LSTM(4, 32), 32)
    return model, torch.optim.Adam(model.parameters(), lr=3e-3), sequence_batches(8, 8)


def _shallow_healthy() -> tuple[nn.Module, torch.optim.Optimizer, Callable[[int], Batch]]:
    model = mlp([64, 64, 64, 10], nn.ReLU, he_init())
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), digits_batches(9)


CORPUS: dict[str, Case] = {
    c.name: c
    for c in (
        Case(
            "deep_sigmoid_mlp",
            "20 sigmoid layers, width 32, weights N(0, 16/fan_in), first N(0, 2.25), SGD 0.1",
            _deep_sigmoid,
            steps=80,
            expect=("vanishing_gradient", "saturated_activation"),
        ),
        Case(
            "deep_tanh_large_init",
            "20 tanh layers, width 32, weights N(0, 16/fan_in), SGD 1e-3",
            _deep_tanh_large,
            steps=120,
            expect=("exploding_gradient",),
        ),
        Case(
            "relu_negative_bias",
            "4 ReLU layers, width 64, He weights, biases -8, SGD 0.05",
            _relu_negative_bias,
            expect=("dead_units",),
        ),
        Case(
            "vanilla_rnn_long",
            "tanh RNN, hidden 32, 60-step sequences, label = first input, Adam 1e-3",
            _vanilla_rnn_long,
            expect=("short_memory",),
        ),
        Case(
            "lr_too_high",
            "3-layer tanh MLP, LeCun init, SGD lr 10",
            _lr_too_high,
            expect=("unstable_updates",),
        ),
        Case(
            "nan_injected",
            "4-layer ReLU MLP; a NaN put in the 2nd Linear's weight gradient at step 60",
            _nan_injected,
            steps=80,
            expect=("nonfinite_gradient",),
            before_step=_inject_nan,
            expect_layer={"nonfinite_gradient": "2"},
        ),
        Case(
            "strong_weight_decay",
            "3-layer ReLU MLP, He init, SGD 0.1 with weight_decay 0.3",
            _weight_decay,
            expect=("collapsing_weights",),
        ),
        Case(
            "residual_mlp_healthy",
            "8 pre-LayerNorm residual ReLU blocks, He init, Adam 1e-3",
            _residual_healthy,
            healthy=True,
        ),
        Case(
            "lstm_short_healthy",
            "LSTM, hidden 32, 8-step sequences, Adam 3e-3",
            _lstm_short,
            healthy=True,
        ),
        Case(
            "shallow_mlp_healthy",
            "2 hidden ReLU layers, width 64, He init, SGD 0.05 + momentum",
            _shallow_healthy,
            healthy=True,
        ),
    )
}


#: How the corpora record by default: the fixed spacing, so that a case's trace does not
#: depend on the machine's speed. ``--budget`` records under ``gw.watch``'s defaults instead.
FIXED_SPACING: dict[str, Any] = {"overhead": None}


def record(case: Case, seed: int = 0, watch: dict[str, Any] | None = None) -> Trace:
    """Train one corpus model under ``gw.watch`` (in memory) and return its trace;
    ``watch``: the recording options (default :data:`FIXED_SPACING`)."""
    torch.manual_seed(seed)
    model, opt, batches = case.build()
    loss_fn = nn.CrossEntropyLoss()
    with gw.watch(model, opt, **(FIXED_SPACING if watch is None else watch)) as w:
        for step in range(case.steps):
            if case.before_step is not None:
                case.before_step(model, step)
            x, y = batches(step)
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    return w.trace


def run_case(
    case: Case, seed: int = 0, watch: dict[str, Any] | None = None
) -> tuple[Trace, list[Finding], float]:
    """Record and diagnose one case; also return the seconds it took."""
    t0 = time.perf_counter()
    trace = record(case, seed, watch)
    findings = gw.diagnose(trace)
    return trace, findings, time.perf_counter() - t0


# ---------------------------------------------------------------------- margins
#: Thresholds loose enough that every rule reports its statistic whenever it can be computed.
PERMISSIVE = {
    "vanishing_gradient": {"warn_decades": 0.0, "abs_floor": 0.0},
    "exploding_gradient": {"warn_decades": 0.0, "spike_ratio": 1.0, "spike_z": 0.0},
    "stalled_early_layers": {"warn_decades": 0.0},
    "collapsing_weights": {"warn_fraction": 1e9, "min_falling_fraction": 0.0},
    "saturated_activation": {"warn_fraction": 0.0},
    "dead_units": {"warn_fraction": 0.0},
    "poor_initialization": {
        "weight_scale_factor": 1.0,
        "compound_decades": 0.0,
        "gain_factor": 1.0,
    },
    "short_memory": {"warn_decades": 0.0, "min_r2": 0.0},
    "loss_plateau": {"early_fraction": 1.0},
    "unstable_updates": {"warn_ratio": 0.0},
}


def _first(d: object) -> float | None:
    """Largest value of an evidence dict (or the value itself)."""
    if isinstance(d, dict):
        vals = [v for v in d.values() if isinstance(v, (int, float))]
        return max(vals) if vals else None
    return d if isinstance(d, (int, float)) else None


#: (rule id, statistic, how to read it from the permissive finding's evidence).
STATISTICS: list[tuple[str, str, Callable[[dict], float | None]]] = [
    ("vanishing_gradient", "max depth trend (decades)", lambda e: e.get("max_contrast_decades")),
    (
        "exploding_gradient",
        "max reversed depth trend (decades)",
        lambda e: (
            (e.get("depth") or {}).get("first_over_last_decades")
            or (e.get("depth_not_backward") or {}).get("grad_rms_first_over_last_decades")
        ),
    ),
    (
        "exploding_gradient",
        "max reversed backward-signal trend (decades)",
        lambda e: (e.get("depth") or e.get("depth_not_backward") or {}).get(
            "backward_signal_first_over_last_decades"
        ),
    ),
    (
        "exploding_gradient",
        "max global-norm jump over trailing median",
        lambda e: (e.get("spikes") or {}).get("max_ratio_to_trailing_median"),
    ),
    (
        "stalled_early_layers",
        "update-ratio trend (decades)",
        lambda e: e.get("late_over_early_decades"),
    ),
    (
        "collapsing_weights",
        "min final/initial weight norm",
        lambda e: min((v for v in e["final_over_initial"].values() if v is not None), default=None),
    ),
    (
        "loss_plateau",
        "plateau start (fraction of run)",
        # (in summed learning rate where the trace has one, as the rule counts it)
        lambda e: e.get("lr_spent_before", 1.0 - e["plateau_windows"] / e["windows"]),
    ),
    ("loss_plateau", "plateau trend (Mann-Kendall z)", lambda e: e.get("plateau_trend_z")),
    (
        "loss_plateau",
        "share between inputs, read by the head",
        lambda e: e.get("plateau_between_inputs"),
    ),
    ("saturated_activation", "max saturated fraction", lambda e: _first(e["saturated_fraction"])),
    ("dead_units", "max dead fraction", lambda e: _first(e["dead_fraction"])),
    (
        "poor_initialization",
        "param scale / needed, compounded",
        lambda e: e.get("compound_factor"),
    ),
    (
        "poor_initialization",
        "backward gain per hidden layer",
        lambda e: e.get("backward_gain_per_layer"),
    ),
    (
        "short_memory",
        "decay over sequence (decades)",
        lambda e: e.get("decay_decades_over_sequence"),
    ),
    (
        "unstable_updates",
        "max block-median update ratio",
        lambda e: _first(e.get("high_update_ratio", {})),
    ),
]


def margins(trace: Trace) -> dict[str, float | None]:
    """Each rule's statistics on ``trace`` (None where it cannot be computed)."""
    found = {f.rule: f.evidence for f in gw.diagnose(trace, PERMISSIVE)}
    return {
        f"{rule}: {label}": (read(found[rule]) if rule in found else None)
        for rule, label, read in STATISTICS
    }


def margins_table(stats: dict[str, dict[str, float | None]]) -> str:
    """Markdown table: each rule's statistic (rows) on each corpus model (columns)."""
    names = list(stats)
    lines = [
        "| statistic | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for rule, label, _ in STATISTICS:
        key = f"{rule}: {label}"
        cells = [("-" if stats[n][key] is None else f"{stats[n][key]:.3g}") for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- the table
_MARK = {"critical": "**C**", "warning": "W", "info": "i"}


def confusion_table(results: dict[str, list[Finding]], cases: Mapping[str, Any] = CORPUS) -> str:
    """Markdown table: one row per model (of ``cases``), one column per rule, the severity."""
    short = [r.replace("_", " ") for r in RULE_IDS]
    lines = [
        "| model | expected | " + " | ".join(short) + " | note |",
        "| --- | --- | " + " | ".join("---" for _ in RULE_IDS) + " | --- |",
    ]
    for name, findings in results.items():
        case = cases[name]
        fired = {f.rule: f.severity for f in findings}
        note = getattr(case, "expect_note", None)
        expected = "healthy" if case.healthy else ", ".join(case.expect) or f'note "{note}"'
        cells = [_MARK.get(fired.get(r, ""), "") for r in RULE_IDS]
        # N: the diagnosis has a note (a mistake of the loop no finding carries).
        said = "N" if getattr(findings, "notes", ()) else ""
        lines.append(f"| {name} | {expected} | " + " | ".join(cells) + f" | {said} |")
    return "\n".join(lines)


def evidence_table(results: dict[str, list[Finding]], cases: Mapping[str, Any] = CORPUS) -> str:
    """Markdown list of each model's findings: rule, severity, layers, message."""
    out = []
    for name, findings in results.items():
        out.append(f"- **{name}** ({cases[name].description}):")
        if not findings:
            out.append("  no finding.")
        for f in findings:
            where = f" [{', '.join(f.layers[:3])}]" if f.layers else ""
            out.append(f"  - `{f.rule}` {f.severity}{where}: {f.message}")
        out += [f"  - note: {note}" for note in getattr(findings, "notes", ())]
    return "\n".join(out)


def thresholds_table() -> str:
    """Markdown table of every threshold, its default and its source comment in thresholds.py."""
    import dataclasses
    import inspect

    from gradwatch.diagnosis import Thresholds

    lines = ["| rule | threshold | default | source / reason |", "| --- | --- | --- | --- |"]
    for group in dataclasses.fields(Thresholds):
        cls = type(getattr(Thresholds(), group.name))
        names = {f.name: f.default for f in dataclasses.fields(cls)}
        comment: list[str] = []
        for line in inspect.getsource(cls).splitlines():
            text = line.strip()
            if text.startswith("#"):
                comment.append(text.lstrip("# ").strip())
                continue
            head = text.split(":")[0]
            if head in names and "=" in text:
                why = " ".join(comment).replace("|", "\\|")
                lines.append(f"| {group.name} | `{head}` | {names[head]!r} | {why} |")
            comment = [] if not text.startswith("#") else comment
    return "\n".join(lines)


SCRIPT = "benchmarks/diagnosis_corpus.py"
#: The tables each generated block of docs/diagnosis.md holds (block -> header cells; "..."
#: = one column per model), checked against the page by tests/docs/test_generated.py.
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {
    "toy": [
        ("rule", "threshold", "default", "source / reason"),
        ("model", "expected", *(r.replace("_", " ") for r in RULE_IDS), "note"),
        ("statistic", "..."),
    ],
    "real": [
        ("model", "expected", *(r.replace("_", " ") for r in RULE_IDS), "note"),
        ("model", "kind", "independent check", "s"),
        ("statistic", "..."),
    ],
}


def budget_note(trace: Trace) -> str:
    """What the overhead budget chose and measured in ``trace`` ("" under the fixed spacing)."""
    schedule = trace.config.get("schedule")
    if not isinstance(schedule, dict) or schedule.get("measured_share") is None:
        return ""
    return (
        f"  budget: measured {schedule['measured_share']:.1%} over "
        f"{schedule.get('steps_measured')} steps, sampled every "
        f"{schedule.get('sample_spacing')}, gradients every {schedule.get('record_spacing')}"
    )


def toy_section(
    names: list[str], seed: int, watch: dict[str, Any] | None = None, steps: int | None = None
) -> str:
    """Run the toy corpus (each case ``steps`` long where given), print its rows and tables;
    return the docs section."""
    results: dict[str, list[Finding]] = {}
    times: dict[str, float] = {}
    stats: dict[str, dict[str, float | None]] = {}
    for name in names:
        case = CORPUS[name] if steps is None else replace(CORPUS[name], steps=steps)
        trace, findings, secs = run_case(case, seed, watch)
        results[name], times[name] = findings, secs
        stats[name] = margins(trace)
        fired = ", ".join(f"{f.rule}:{f.severity}" for f in findings)
        print(f"{name:24s} {secs:5.1f} s  {fired}{budget_note(trace)}")
    table = confusion_table(results)
    print()
    print(table)
    print()
    print(margins_table(stats))
    head = _docs.header(
        f"PYTHONPATH=src python {SCRIPT} --corpus toy --write-docs --seed {seed}",
        f"One CPU thread; record + diagnose took {min(times.values()):.1f}-"
        f"{max(times.values()):.1f} s per model.",
    )
    return (
        f"{head}\n\n### Thresholds\n\nEvery default, with the source comment it carries in "
        "`src/gradwatch/diagnosis/thresholds.py`:\n\n"
        f"{thresholds_table()}\n\n### Confusion table\n\n"
        "**C** = critical, W = warning, i = info, N = a note of the loop.\n\n"
        f"{table}\n\nEach rule's statistic on each model (the margins the thresholds sit "
        "in; '-' = not computable or no evidence in that direction):\n\n"
        f"{margins_table(stats)}\n\n"
        f"What each model's findings say:\n\n{evidence_table(results)}"
    )


def real_section(
    names: list[str], seed: int, watch: dict[str, Any] | None = None, steps: int | None = None
) -> str:
    """Run the real-architecture corpus (``real_corpus/``; each case ``steps`` long where
    given), print its tables; return the docs section."""
    import real_corpus

    cases = real_corpus.REAL_CORPUS
    results: dict[str, list[Finding]] = {}
    stats: dict[str, dict[str, float | None]] = {}
    rows = ["| model | kind | independent check | s |", "| --- | --- | --- | --- |"]
    for name in names:
        case = cases[name]
        run = real_corpus.record(case, seed, watch=watch, steps=steps)
        ok, detail = case.check(run)
        results[name], stats[name] = run.findings, margins(run.trace)
        kind = "healthy" if case.healthy else "broken"
        verdict = ("learns" if case.healthy else "broken") if ok else "CHECK FAILED"
        cell = f"{verdict}: {detail}".replace("|", "\\|")  # a norm's bars are not columns
        rows.append(f"| {name} | {kind} | {cell} | {run.seconds:.1f} |")
        fired = ", ".join(f"{f.rule}:{f.severity}" for f in run.findings)
        print(
            f"{name:30s} {run.seconds:5.1f} s  {verdict} ({detail}){budget_note(run.trace)}\n"
            f"{'':32s}{fired}"
        )
    table = confusion_table(results, cases)
    checks = "\n".join(rows)
    print()
    print(table)
    print()
    print(checks)
    return (
        _docs.header(
            f"PYTHONPATH=src python {SCRIPT} --corpus real --write-docs --seed {seed}",
            "One CPU thread; seconds are record + diagnose. **C** = critical, W = warning, "
            "i = info, N = a note of the loop (a mistake no rule has an id for).",
        )
        + f"\n\n{table}\n\nEach case's independent check (the training loop's own losses, "
        "gradients and probes, not gradwatch):\n\n"
        f"{checks}\n\nEach rule's statistic on each model ('-' = not computable or no "
        f"evidence in that direction):\n\n{margins_table(stats)}\n\n"
        f"What each model's findings say:\n\n{evidence_table(results, cases)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus",
        choices=("toy", "real", "both"),
        default="both",
        help="the toy corpus (this file), the real architectures (real_corpus/), or both",
    )
    parser.add_argument("--only", action="append", help="run only these models (either corpus)")
    parser.add_argument("--write-docs", action="store_true", help="update docs/diagnosis.md")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--budget",
        action="store_true",
        help="record under gw.watch's defaults (the overhead budget, whose spacing depends on "
        "this machine's speed) instead of the fixed spacing; not with --write-docs",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="train every case this many steps instead of its own (with --budget: how the "
        "measured share settles over a longer run); not with --write-docs",
    )
    args = parser.parse_args()
    if args.steps is not None and (args.write_docs or args.steps < 1):
        parser.error("--steps takes a positive count, and the docs keep each case's own length")
    if args.budget and args.write_docs:
        parser.error(
            "--budget runs depend on the machine's speed: the docs keep fixed-spacing runs"
        )
    watch: dict[str, Any] | None = {} if args.budget else None
    torch.set_num_threads(1)
    docs = Path(__file__).resolve().parents[1] / "docs" / "diagnosis.md"
    for corpus in ("toy", "real") if args.corpus == "both" else (args.corpus,):
        if corpus == "toy":
            known, section = list(CORPUS), toy_section
        else:
            import real_corpus  # a package beside this file: on sys.path when run as a script

            known, section = list(real_corpus.REAL_CORPUS), real_section
        names = [n for n in known if not args.only or n in args.only]
        if names:
            print(f"\n## {corpus} corpus\n")
            body = section(names, args.seed, watch, args.steps)
            if args.write_docs:
                _docs.replace_block(docs, SCRIPT, body, name=corpus)
                print(f"\nupdated the {corpus} section of docs/diagnosis.md")


if __name__ == "__main__":
    main()
