"""``gradwatch watch RUN_DIR``: a live terminal view of a run another process is writing.

Polls the run directory; each time a chunk, the status or a finding lands it redraws: the
gradient's flow along depth (a bar and a sparkline per layer group), the loss, the newest
findings. In a terminal it redraws in place (rich Live; fine over SSH); without one, or
with ``--format json``, it prints one block (one JSON object per line) per update. Ends on
Ctrl-C (status 0) and, with ``--follow`` (the default), when the run is complete, failed or
stopped; ``--once`` prints the current state and exits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ._options import add_format


def register(subparsers: Any) -> None:
    """Add the ``watch`` sub-command."""
    p = subparsers.add_parser(
        "watch",
        help="live view of a run being recorded: gradient flow, loss, new findings",
        description=(
            "Follow a run directory that gw.watch is writing (in another process or on "
            "another machine over SSH) and redraw as each flush lands: gradient RMS along "
            "depth, the loss, the newest findings. Ctrl-C ends it."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="directory given to gw.watch(run_dir=...)")
    add_format(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--follow",
        dest="follow",
        action="store_true",
        default=True,
        help="keep watching until the run is complete, failed or stopped (default)",
    )
    mode.add_argument(
        "--once", dest="follow", action="store_false", help="show the current state and exit"
    )
    p.add_argument(
        "--interval", type=float, default=1.0, help="seconds between looks at the directory"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="stop following after this many seconds even if the run goes on",
    )
    p.add_argument("--groups", type=int, default=16, help="most rows of the gradient-flow view")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> Path:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ValueError(
            f"RUN_DIR {str(run_dir)!r} is not a directory; pass the run_dir given to "
            "gw.watch (start the training first, or check the path)."
        )
    if args.interval <= 0:
        raise ValueError(f"--interval must be > 0 seconds but got {args.interval}.")
    if args.groups < 1:
        raise ValueError(f"--groups must be at least 1 but got {args.groups}.")
    return run_dir


def run(args: argparse.Namespace) -> int:
    """Watch the run; 0 when it ends, when interrupted, or after ``--once``."""
    run_dir = _check(args)
    live_display = args.format == "human" and sys.stdout.isatty() and args.follow
    started = time.monotonic()
    state: tuple[Any, ...] | None = None
    display: Any = None
    try:
        from gradwatch.live import view  # (imports torch: seconds a Ctrl-C may fall in)

        while True:
            state, fresh = view.changed(run_dir, state)
            if fresh:
                snap = view.snapshot(run_dir, groups=args.groups)
                if args.format == "json":
                    print(json.dumps(snap.to_json(), allow_nan=False), flush=True)
                elif live_display:
                    if display is None:
                        from rich.live import Live

                        display = Live(view.render_rich(snap), auto_refresh=False)
                        display.start()
                    display.update(view.render_rich(snap), refresh=True)
                else:
                    print(view.render_text(snap) + "\n", flush=True)
                if not args.follow or snap.status in view.DONE:
                    return 0
            if args.timeout is not None and time.monotonic() - started > args.timeout:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how one stops watching: not an error
    finally:
        if display is not None:
            display.stop()
