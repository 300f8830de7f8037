"""Entry point of the ``gradwatch`` command.

Each sub-command lives in its own module under ``gradwatch.cli`` and exposes
``register(subparsers)`` (adds its parser and sets ``func``) and a ``run(args) -> int``.
Known errors become a one-line message and exit code 2; the full traceback only with
``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Sub-command modules, in the order ``gradwatch --help`` lists them.
_COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "diagnose",
    "explain",
    "fix",
    "theory",
    "report",
    "export",
    "lab",
)


def build_parser() -> argparse.ArgumentParser:
    from gradwatch._version import __version__

    parser = argparse.ArgumentParser(
        prog="gradwatch",
        description="See, explain and fix vanishing and exploding gradients in PyTorch models.",
    )
    parser.add_argument("--version", action="version", version=f"gradwatch {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"gradwatch.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("gradwatch: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, KeyError) as exc:
        if args.debug:
            raise
        print(f"gradwatch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from gradwatch.trace import TraceError

        if isinstance(exc, TraceError) and not args.debug:
            print(f"gradwatch {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
