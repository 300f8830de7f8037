"""``gradwatch lab``: run one experiment, a sweep, or a published study.

gradwatch lab run CONFIG.toml [--out DIR] [--overwrite] [--format json]
gradwatch lab sweep CONFIG.toml [--out DIR] [--workers N]
gradwatch lab study NAME [--size test|full] | --list | --all [--markdown FILE]
gradwatch lab configs            # the example configs shipped with gradwatch
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lab",
        help="reproducible experiments: runs, sweeps and classic results reproduced",
        description="Reproducible gradient experiments on small models and local data.",
    )
    sub = parser.add_subparsers(dest="lab_command", metavar="LAB_COMMAND", required=True)

    p_run = sub.add_parser("run", help="train one config, recorded by gradwatch")
    p_run.add_argument("config", help="a lab config TOML file (see `gradwatch lab configs`)")
    p_run.add_argument("--out", help="run directory (default: runs/<config name>)")
    p_run.add_argument("--overwrite", action="store_true", help="replace a run already there")
    p_run.add_argument("--format", choices=("text", "json"), default="text")
    p_run.set_defaults(func=run_one)

    p_sweep = sub.add_parser("sweep", help="train a grid of configs ([sweep] table)")
    p_sweep.add_argument("config", help="a lab config TOML file with a [sweep] table")
    p_sweep.add_argument("--out", help="sweep directory (default: runs/<config file stem>)")
    p_sweep.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p_sweep.set_defaults(func=run_sweep)

    p_study = sub.add_parser("study", help="reproduce a published result (see --list)")
    p_study.add_argument("name", nargs="?", help="study id, e.g. glorot2010")
    p_study.add_argument("--list", action="store_true", help="list the studies and exit")
    p_study.add_argument("--all", action="store_true", help="run every study")
    p_study.add_argument("--size", choices=("test", "full"), default="full")
    p_study.add_argument("--markdown", help="write the claim-vs-measured table to this file")
    p_study.add_argument("--format", choices=("text", "json"), default="text")
    p_study.set_defaults(func=run_study)

    p_cfg = sub.add_parser("configs", help="list the example configs shipped with gradwatch")
    p_cfg.set_defaults(func=list_configs)


def _progress_bar(total: int, label: str) -> Any:
    """A rich progress bar on a terminal, else None (no bars in logs and pipes)."""
    if not sys.stderr.isatty():
        return None
    try:
        from rich.progress import Progress
    except ImportError:
        return None
    progress = Progress(transient=True)
    return progress, progress.add_task(label, total=total)


def _fmt(value: float) -> str:
    if isinstance(value, float) and (math.isnan(value) or value == 0 or 1e-3 <= abs(value) < 1e4):
        return f"{value:.4g}"
    return f"{value:.2e}" if isinstance(value, float) else str(value)


def _one_thread() -> None:
    """Lab models are tiny: one torch thread is as fast, avoids thread-pool stalls on a busy
    machine, and makes results independent of the core count (see runner's determinism)."""
    import torch

    torch.set_num_threads(1)


def run_one(args: argparse.Namespace) -> int:
    from gradwatch.lab.config import load_config
    from gradwatch.lab.runner import run

    config = load_config(args.config)
    _one_thread()
    out = Path(args.out) if args.out else Path("runs") / (config.name or Path(args.config).stem)
    bar = _progress_bar(config.steps, config.name or "training")
    if bar is None:
        result = run(config, out, overwrite=args.overwrite)
    else:
        progress, task_id = bar
        with progress:
            result = run(
                config, out, overwrite=args.overwrite,
                progress=lambda step, _n: progress.update(task_id, completed=step),
            )  # fmt: skip
    if args.format == "json":
        data = result.to_json()
        data.pop("losses")
        print(json.dumps(data, indent=2))
        return 0
    print(f"run       {result.run_dir}")
    print(
        f"test {result.metric:<8} {_fmt(result.test_metric)}  "
        f"(trivial baseline {_fmt(result.baseline)})"
    )
    print(f"final loss     {_fmt(result.final_loss)}{'  DIVERGED' if result.diverged else ''}")
    print(f"first/last layer grad RMS  {_fmt(result.grad_ratio)}")
    rules = ", ".join(f"{f['rule']} ({f['severity']})" for f in result.findings) or "none"
    print(f"findings  {rules}")
    print(f"time      {result.seconds:.1f} s for {result.steps} steps")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    from gradwatch.lab.sweep import sweep

    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem

    def on_done(point: Any, result: Any, skipped: bool) -> None:
        state = "skipped (finished before)" if skipped else f"{result.seconds:.1f} s"
        print(
            f"{point.name}: {result.metric} {_fmt(result.test_metric)}, "
            f"grad ratio {_fmt(result.grad_ratio)}  [{state}]",
            flush=True,
        )

    frame = sweep(args.config, out, workers=args.workers, on_done=on_done)
    print(f"{len(frame)} runs; table in {out / 'results.parquet'} and {out / 'results.csv'}")
    return 0


def run_study(args: argparse.Namespace) -> int:
    from gradwatch.lab import studies

    if args.list:
        for name, study in studies.STUDIES.items():
            print(f"{name:<16} {study.CITATION}")
        return 0
    if args.all == bool(args.name):
        raise ValueError("give one study NAME or --all (see `gradwatch lab study --list`)")
    names = list(studies.STUDIES) if args.all else [args.name]
    _one_thread()
    outcomes = []
    for name in names:
        outcome = studies.run_study(name, size=args.size)
        outcomes.append(outcome)
        if args.format == "text":
            print(outcome.render(), flush=True)
    if args.format == "json":
        print(json.dumps([o.to_json() for o in outcomes], indent=2))
    if args.markdown:
        Path(args.markdown).write_text(studies.studies_page(outcomes))
        print(f"wrote {args.markdown}")
    return 0 if all(o.held for o in outcomes) else 1


def list_configs(args: argparse.Namespace) -> int:
    from importlib.resources import files

    folder = files("gradwatch.lab") / "configs"
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            first = entry.read_text().splitlines()[0].lstrip("# ")
            print(f"{entry}\n    {first}")
    return 0
