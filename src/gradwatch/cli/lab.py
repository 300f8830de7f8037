"""``gradwatch lab``: run one experiment, a sweep, or a published study.

gradwatch lab run CONFIG.toml [--out DIR] [--overwrite]
gradwatch lab sweep CONFIG.toml [--out DIR] [--workers N]
gradwatch lab study NAME [--size test|full] | --list | --all [--markdown FILE]
gradwatch lab configs            # the example configs shipped with gradwatch

Each takes ``--format human|json``; progress bars show only on a terminal, never for JSON.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ._options import TEXT_ALIAS_EPILOG, add_format, dump_json


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lab",
        help="reproducible experiments: runs, sweeps and classic results reproduced",
        description="Reproducible gradient experiments on small models and local data.",
    )
    sub = parser.add_subparsers(dest="lab_command", metavar="LAB_COMMAND", required=True)

    p_run = sub.add_parser(
        "run", help="train one config, recorded by gradwatch", epilog=TEXT_ALIAS_EPILOG
    )
    p_run.add_argument("config", help="a lab config TOML file (see `gradwatch lab configs`)")
    p_run.add_argument("--out", help="run directory (default: runs/<config name>)")
    p_run.add_argument("--overwrite", action="store_true", help="replace a run already there")
    add_format(p_run, text_alias=True)
    p_run.set_defaults(func=run_one)

    p_sweep = sub.add_parser("sweep", help="train a grid of configs ([sweep] table)")
    p_sweep.add_argument("config", help="a lab config TOML file with a [sweep] table")
    p_sweep.add_argument("--out", help="sweep directory (default: runs/<config file stem>)")
    p_sweep.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    add_format(p_sweep)
    p_sweep.set_defaults(func=run_sweep)

    p_study = sub.add_parser(
        "study", help="reproduce a published result (see --list)", epilog=TEXT_ALIAS_EPILOG
    )
    p_study.add_argument("name", nargs="?", help="study id, e.g. glorot2010")
    p_study.add_argument("--list", action="store_true", help="list the studies and exit")
    p_study.add_argument("--all", action="store_true", help="run every study")
    p_study.add_argument("--size", choices=("test", "full"), default="full")
    p_study.add_argument("--markdown", help="write the claim-vs-measured table to this file")
    add_format(p_study, text_alias=True)
    p_study.set_defaults(func=run_study)

    p_cfg = sub.add_parser("configs", help="list the example configs shipped with gradwatch")
    add_format(p_cfg)
    p_cfg.set_defaults(func=list_configs)


def _fmt(value: float) -> str:
    if isinstance(value, float) and (math.isnan(value) or value == 0 or 1e-3 <= abs(value) < 1e4):
        return f"{value:.4g}"
    return f"{value:.2e}" if isinstance(value, float) else str(value)


def _resolve_config(config: str) -> str:
    """A config path as given, or a shipped config by name (``deep_sigmoid.toml``).

    ``gradwatch lab configs`` lists the shipped configs by file name, and their comments
    say ``gradwatch lab run deep_sigmoid.toml``: a bare name that is not a file here is
    looked up among them (with or without ``.toml``).

    Raises:
        FileNotFoundError: When it is neither a file nor a shipped config; lists those.
    """
    if Path(config).exists() or Path(config).name != config:
        return config  # a path: load_config reports a missing one itself
    from importlib.resources import as_file, files

    folder = files("gradwatch.lab") / "configs"
    shipped = sorted(e.name for e in folder.iterdir() if e.name.endswith(".toml"))
    name = config if config.endswith(".toml") else f"{config}.toml"
    if name in shipped:
        with as_file(folder / name) as path:  # a real file for a zipped install, too
            return str(path)
    raise FileNotFoundError(
        f"config {config!r} is neither a file nor a shipped config. Shipped configs: "
        f"{', '.join(shipped)} (see `gradwatch lab configs`)."
    )


def _one_thread() -> None:
    """Lab models are tiny: one torch thread is as fast, avoids thread-pool stalls on a busy
    machine, and makes results independent of the core count (see runner's determinism)."""
    import torch

    torch.set_num_threads(1)


def run_one(args: argparse.Namespace) -> int:
    from gradwatch.lab.config import load_config
    from gradwatch.lab.runner import run
    from gradwatch.report.console import progress

    args.config = _resolve_config(args.config)
    config = load_config(args.config)
    _one_thread()
    out = Path(args.out) if args.out else Path("runs") / (config.name or Path(args.config).stem)
    with progress(config.name or "training", config.steps, output_format=args.format) as bar:
        on_step = (lambda step, _n: bar.update(completed=step)) if bar.active else None
        result = run(config, out, overwrite=args.overwrite, progress=on_step)
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
    from gradwatch.lab.config import load_sweep
    from gradwatch.lab.sweep import expand, sweep
    from gradwatch.report.console import progress, progress_enabled

    args.config = _resolve_config(args.config)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    human = args.format == "human"
    # Someone is watching: expand (and validate) the grid once more, only to size the bar.
    total = len(expand(*load_sweep(args.config))) if progress_enabled(args.format) else None
    with progress("sweep", total, output_format=args.format) as bar:

        def on_done(point: Any, result: Any, skipped: bool) -> None:
            bar.advance()
            if not human:
                return
            state = "skipped (finished before)" if skipped else f"{result.seconds:.1f} s"
            bar.print(
                f"{point.name}: {result.metric} {_fmt(result.test_metric)}, "
                f"grad ratio {_fmt(result.grad_ratio)}  [{state}]"
            )

        # this command draws the sweep's bar itself, with a line per finished run
        frame = sweep(args.config, out, workers=args.workers, on_done=on_done, progress=False)
    tables = (out / "results.parquet", out / "results.csv")
    if not human:
        body = {"out": out, "tables": tables, "runs": frame.to_dict(orient="records")}
        print(dump_json(body))
        return 0
    print(f"{len(frame)} runs; table in {tables[0]} and {tables[1]}")
    return 0


def run_study(args: argparse.Namespace) -> int:
    from gradwatch.lab import studies
    from gradwatch.report.console import progress

    human = args.format == "human"
    if args.list:
        if not human:
            cited = [{"name": n, "citation": s.CITATION} for n, s in studies.STUDIES.items()]
            print(dump_json(cited))
            return 0
        for name, study in studies.STUDIES.items():
            print(f"{name:<16} {study.CITATION}")
        return 0
    if args.all == bool(args.name):
        raise ValueError("give one study NAME or --all (see `gradwatch lab study --list`)")
    names = list(studies.STUDIES) if args.all else [args.name]
    _one_thread()
    outcomes = []
    with progress("studies", len(names), output_format=args.format) as bar:
        for name in names:
            bar.update(description=f"study {name}")
            outcome = studies.run_study(name, size=args.size)
            outcomes.append(outcome)
            bar.advance()
            if human:
                bar.print(outcome.render())
    if not human:
        print(json.dumps([o.to_json() for o in outcomes], indent=2))
    if args.markdown:
        Path(args.markdown).write_text(studies.studies_page(outcomes))
        if human:
            print(f"wrote {args.markdown}")
    return 0 if all(o.held for o in outcomes) else 1


def list_configs(args: argparse.Namespace) -> int:
    from importlib.resources import files

    folder = files("gradwatch.lab") / "configs"
    found = [
        (str(entry), entry.read_text().splitlines()[0].lstrip("# "))
        for entry in sorted(folder.iterdir(), key=lambda p: p.name)
        if entry.name.endswith(".toml")
    ]
    if args.format == "json":
        print(dump_json([{"path": path, "description": first} for path, first in found]))
        return 0
    for path, first in found:
        print(f"{path}\n    {first}")
    return 0
