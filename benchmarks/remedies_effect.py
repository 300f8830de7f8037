"""Measure what each remedy does to a 20-layer sigmoid MLP on scikit-learn's digits.

For each remedy, ``gw.verify`` trains a copy with and without it (same batches, same seed,
recorded with ``gw.watch``) and reports the first/last layer gradient-RMS ratio at step 0
and the loss. Run: ``PYTHONPATH=src python benchmarks/remedies_effect.py [--steps 300]
[--write-docs]``. The table in docs/remedies.md comes from this script: ``--write-docs``
writes it into the page's generated block (benchmarks/_docs.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn

import gradwatch as gw
from gradwatch import remedies as R

SCRIPT = "benchmarks/remedies_effect.py"
COLUMNS = (
    "remedy",
    "ratio before",
    "ratio after",
    "gain",
    "loss before",
    "loss after",
    "findings gone",
    "findings new",
    "s",
)

# The shared writer of generated doc blocks, beside this file (also when imported by tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _docs  # noqa: E402

#: Block name -> the header cells of the tables it holds (tests/docs/test_generated.py).
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {"": [COLUMNS]}


def _mlp(depth: int = 20, width: int = 64) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(64, width), nn.Sigmoid()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-docs", action="store_true", help="update docs/remedies.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    g = torch.Generator().manual_seed(args.seed)
    batches = []
    for _ in range(50):
        idx = torch.randint(0, len(x), (64,), generator=g)
        batches.append((x[idx], y[idx]))
    model = _mlp()

    def relu_he(m: nn.Module) -> nn.Module:
        return R.init_he_(R.swap_activations(m, "relu").model)

    def selu_lecun(m: nn.Module) -> nn.Module:
        return R.init_lecun_(R.swap_activations(m, "selu").model)

    cases: list[tuple[str, Any, dict[str, Any]]] = [
        ("relu", "relu", {}),
        ("relu + init_he", relu_he, {}),
        ("tanh", "tanh", {}),
        ("selu + init_lecun", selu_lecun, {}),
        ("init_xavier", "init_xavier", {}),
        ("init_he (sigmoid kept)", "init_he", {}),
        ("init_orthogonal (gain auto)", "init_orthogonal", {"gain": "auto"}),
        ("init_lsuv", "init_lsuv", {}),
        ("batchnorm", "batchnorm", {}),
        ("layernorm", "layernorm", {}),
        ("residual", "residual", {}),
        ("reduce_depth (keep 4 of 18)", "reduce_depth", {"keep": 4}),
        ("layerwise_pretraining", "layerwise_pretraining", {"epochs": 1}),
        ("clip_norm (max_norm 1)", "clip_norm", {"max_norm": 1.0}),
    ]
    make_opt: Callable[..., torch.optim.Optimizer] = lambda p: torch.optim.SGD(p, lr=args.lr)  # noqa: E731
    docs = _docs
    setting = (
        f"20-layer sigmoid MLP (width 64) on digits, SGD lr={args.lr}, {args.steps} steps, "
        f"batch 64, seed {args.seed}; ratio = first/last layer grad RMS at step 0; loss = mean "
        "of the last 30 steps; s = both runs of the gw.verify call"
    )
    print(setting)
    rows: list[list[str]] = []
    baseline_findings: tuple[str, ...] = ()
    for label, remedy, opts in cases:
        t0 = time.perf_counter()
        v = gw.verify(
            model,
            remedy,
            batches,
            steps=args.steps,
            seed=args.seed,
            options=opts,
            optimizer=make_opt,
        )  # findings from gw.diagnose
        dt = time.perf_counter() - t0
        baseline_findings = v.before.findings
        rows.append(
            [
                label,
                f"{v.before.grad_ratio_first:.2e}",
                f"{v.after.grad_ratio_first:.2e}",
                f"{v.gradient_gain:.1e}",
                f"{v.before.loss_last:.3f}",
                f"{v.after.loss_last:.3f}",
                ", ".join(v.disappeared or ()) or "-",
                ", ".join(v.appeared or ()) or "-",
                f"{dt:.1f}",
            ]
        )
        print("| " + " | ".join(rows[-1]) + " |", flush=True)
    table = docs.table(COLUMNS, rows)
    if args.write_docs:
        head = docs.header(
            f"PYTHONPATH=src python {SCRIPT} --steps {args.steps} --write-docs", setting + "."
        )
        found = (
            f" The baseline's findings: {', '.join(baseline_findings)}."
            if baseline_findings
            else ""
        )
        root = Path(__file__).resolve().parents[1]
        docs.replace_block(root / "docs" / "remedies.md", SCRIPT, f"{head}{found}\n\n{table}")
        print("updated docs/remedies.md")


if __name__ == "__main__":
    main()
