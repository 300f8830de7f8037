"""Entry point of the ``gradwatch`` command.

Each sub-command lives in its own module under ``gradwatch.cli`` and exposes
``register(subparsers)`` (adds its parser and sets ``func``) and a ``run(args) -> int``.
Known errors (TraceError, OSError, ValueError, TypeError, KeyError) become one line naming
the file or argument, and exit code 2; the full traceback only with ``--debug``. A reader
that closes the pipe early (``gradwatch explain RUN | head -1``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# Sub-command modules, in the order ``gradwatch --help`` lists them.
_COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "diagnose",
    "explain",
    "fix",
    "theory",
    "report",
    "watch",
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


def _one_line(exc: BaseException) -> str:
    """The error as one line: an OSError as its reason and the path it concerns."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename and str(exc.filename) not in text:
            text = f"{text}: {str(exc.filename)!r}"
    else:
        text = str(exc)
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])  # not the repr str(KeyError) gives
    return " ".join(text.split())


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (``| head``): stop quietly, as ``cat`` does.

    Python would otherwise report a BrokenPipeError again when it flushes stdout at exit;
    pointing stdout at /dev/null leaves it nothing to flush.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (captured in a test)
        pass
    finally:
        os.close(devnull)
    return 0


def _stdout_is_devnull() -> bool:
    try:
        return os.path.samestat(os.fstat(sys.stdout.fileno()), Path(os.devnull).stat())
    except (OSError, ValueError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gradwatch`` command; its exit status.

    Every known failure (a run directory that cannot be read, a path that cannot be
    written, a bad argument) is one line on stderr naming what went wrong and exit status 2;
    ``--debug`` shows the traceback instead. A closed pipe on stdout ends the command
    quietly with status 0.
    """
    from gradwatch.trace import TraceError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except KeyboardInterrupt:
        print("gradwatch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except SystemExit as exc:
        # rich meets a closed pipe itself: it points stdout at /dev/null and exits 1. The
        # same quiet end as ours, with the same status.
        if exc.code == 1 and _stdout_is_devnull():
            return 0
        raise
    except (TraceError, OSError, ValueError, TypeError, KeyError) as exc:
        if args.debug:
            raise
        print(f"gradwatch {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
