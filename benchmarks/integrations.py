"""Step-time overhead of the framework callbacks (Lightning, Hugging Face Trainer), side by side.

For each framework the same small training (a tanh MLP, ``--depth`` x ``--width``, batch 64,
Adam, on CPU) is fitted again and again in one process: without gradwatch ("none"), with its
``GradwatchCallback`` at default settings (run directory written, flushes included), and
without gradwatch once more ("none (A/A)": the noise floor). The fits take turns, in the order
A B C then C B A, for ``--rounds`` rounds, so the slow phases of a shared machine hit every
configuration alike. A fit's step time is the median of its per-step times (batch end to batch
end) after the dense start (the first ``dense_steps=20`` steps, all sampled), both wall time
and this process's CPU time: on a shared machine other processes stretch the wall time of
whole fits, the CPU time much less. The table gives, per configuration, the median step time,
the median of the per-round ratios to "none" (CPU time, and wall time) and the CPU ratios'
spread (min-max over rounds).

Usage::

    python benchmarks/integrations.py
    python benchmarks/integrations.py --rounds 9 --markdown docs/integrations.md
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

# The shared writer of generated doc blocks, beside this file (also when imported by tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _docs

os.environ.setdefault("WANDB_MODE", "disabled")

CONFIGS = ("none", "gradwatch", "none (A/A)")
_DENSE = 20  # gw.watch's default dense_steps: every one of these steps is sampled


def _mlp(depth: int, width: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(16, width), nn.Tanh()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.Tanh()]
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 16, generator=g)
    return x, x[:, :1].tanh()


def _steady(stamps: list[tuple[float, float]]) -> tuple[float, float]:
    """Median (wall, CPU) time of one step after the dense start."""
    wall = [b[0] - a[0] for a, b in itertools.pairwise(stamps)][_DENSE:]
    cpu = [b[1] - a[1] for a, b in itertools.pairwise(stamps)][_DENSE:]
    return statistics.median(wall), statistics.median(cpu)


def _stamp() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


# ---------------------------------------------------------------------- Lightning
def lightning_fit(
    config: str, steps: int, depth: int, width: int, tmp: Path
) -> tuple[float, float]:
    """One Lightning fit; its steady per-step (wall, CPU) time in seconds."""
    import pytorch_lightning as pl

    from gradwatch.integrations.lightning import GradwatchCallback

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _mlp(depth, width)

        def training_step(self, batch: Any, idx: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    class Clock(pl.Callback):
        def __init__(self) -> None:
            self.stamps: list[tuple[float, float]] = []

        def on_train_batch_end(self, *args: Any) -> None:
            self.stamps.append(_stamp())

    clock = Clock()
    callbacks: list[Any] = [clock]
    if config == "gradwatch":
        callbacks.append(GradwatchCallback(tmp / "run", report=False, overwrite=True))
    x, y = _data(64 * 50)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    torch.manual_seed(0)
    trainer = pl.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        default_root_dir=tmp,
        callbacks=callbacks,
    )
    trainer.fit(Net(), loader)
    return _steady(clock.stamps)


# ---------------------------------------------------------------------- Hugging Face
def transformers_fit(
    config: str, steps: int, depth: int, width: int, tmp: Path
) -> tuple[float, float]:
    """One Hugging Face Trainer run; its steady per-step (wall, CPU) time in seconds."""
    import transformers

    from gradwatch.integrations.transformers import GradwatchCallback

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _mlp(depth, width)

        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            out = self.net(x)
            return {"loss": nn.functional.mse_loss(out, labels), "logits": out}

    class Clock(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.stamps: list[tuple[float, float]] = []

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            self.stamps.append(_stamp())

    clock = Clock()
    callbacks: list[Any] = [clock]
    if config == "gradwatch":
        callbacks.append(GradwatchCallback(tmp / "run", report=False, overwrite=True))
    x, y = _data(64 * 50)
    dataset = [{"x": x[i], "labels": y[i]} for i in range(len(x))]
    args = transformers.TrainingArguments(
        output_dir=str(tmp / "out"),
        max_steps=steps,
        per_device_train_batch_size=64,
        learning_rate=1e-3,
        logging_steps=10,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        log_level="error",
        seed=0,
    )
    torch.manual_seed(0)
    transformers.Trainer(model=Net(), args=args, train_dataset=dataset, callbacks=callbacks).train()
    return _steady(clock.stamps)


FRAMEWORKS: dict[str, Callable[[str, int, int, int, Path], tuple[float, float]]] = {
    "Lightning": lightning_fit,
    "HF Trainer": transformers_fit,
}


def run(frameworks: list[str], rounds: int, steps: int, depth: int, width: int) -> list[dict]:
    """Rotate the configurations fit by fit; one row per framework and configuration."""
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name in frameworks:
            fit = FRAMEWORKS[name]
            fit("none", _DENSE + 5, depth, width, tmp)  # warm-up: imports, allocator
            times: dict[str, list[tuple[float, float]]] = {c: [] for c in CONFIGS}
            for i in range(rounds):
                for config in CONFIGS if i % 2 == 0 else tuple(reversed(CONFIGS)):
                    times[config].append(fit(config, steps, depth, width, tmp))
            base = times["none"]
            for config in CONFIGS:
                cpu = [t[1] / b[1] for t, b in zip(times[config], base, strict=True)]
                wall = [t[0] / b[0] for t, b in zip(times[config], base, strict=True)]
                row = {
                    "framework": name,
                    "config": config,
                    "step_ms": 1000 * statistics.median(t[0] for t in times[config]),
                    "cpu_ms": 1000 * statistics.median(t[1] for t in times[config]),
                    "ratio": statistics.median(cpu),
                    "wall_ratio": statistics.median(wall),
                    "lo": min(cpu),
                    "hi": max(cpu),
                }
                rows.append(row)
                print(
                    f"{name:10s}  {config:11s}  wall {row['step_ms']:7.2f} ms  "
                    f"cpu {row['cpu_ms']:7.2f} ms  cpu ratio {row['ratio']:.3f} "
                    f"[{row['lo']:.3f}, {row['hi']:.3f}]  wall ratio {row['wall_ratio']:.3f}",
                    flush=True,
                )
    return rows


#: Columns of the generated table (tests/docs/test_generated.py checks docs against them).
COLUMNS = (
    "framework",
    "configuration",
    "median step, wall (ms)",
    "median step, CPU (ms)",
    "CPU ratio to none (median)",
    "spread (min-max)",
    "wall ratio to none (median)",
)
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {"": [COLUMNS]}


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    docs = _docs
    head = docs.header(
        f"python benchmarks/integrations.py --rounds {args.rounds} --markdown FILE",
        f"A {args.depth}x{args.width} tanh MLP, batch 64, Adam, {args.steps} steps per fit "
        f"(timed after the first {_DENSE}), {args.rounds} rounds, {args.threads} thread(s), "
        f"torch {torch.__version__}.",
    )
    body = [
        [
            r["framework"],
            r["config"],
            f"{r['step_ms']:.2f}",
            f"{r['cpu_ms']:.2f}",
            f"{r['ratio']:.3f}",
            f"{r['lo']:.3f}-{r['hi']:.3f}",
            f"{r['wall_ratio']:.3f}",
        ]
        for r in rows
    ]
    return head + "\n\n" + docs.table(COLUMNS, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--frameworks", nargs="+", default=list(FRAMEWORKS), choices=list(FRAMEWORKS)
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per fit")
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", help="write the table into this file's generated block")
    args = parser.parse_args()
    if args.steps <= _DENSE + 2:
        parser.error(f"--steps must be more than {_DENSE + 2} (the dense start is not timed)")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # the frameworks' own advice, once per fit
    rows = run(args.frameworks, args.rounds, args.steps, args.depth, args.width)
    table = markdown(rows, args)
    print()
    print(table)
    if args.markdown:
        _docs.replace_block(args.markdown, "benchmarks/integrations.py", table)


if __name__ == "__main__":
    main()
