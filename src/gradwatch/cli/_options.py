"""Options every sub-command spells the same way.

``--format human|json``: human-readable output (the default) or one JSON document on stdout
for machines. Commands that used to say ``text`` still accept it as a hidden alias of
``human``, so existing scripts keep working; it is not listed among the choices.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

FORMATS = ("human", "json")

#: Help epilog of the commands that once spelt ``human`` as ``text``.
TEXT_ALIAS_EPILOG = (
    "--format text, the old spelling of --format human, is still accepted (deprecated)."
)


def _format_value(value: str) -> str:
    # argparse applies `type` before checking `choices`, so the old spelling is accepted
    # while `--help` and the invalid-choice error list only human and json.
    return "human" if value == "text" else value


def add_format(parser: argparse.ArgumentParser, *, text_alias: bool = False) -> None:
    """Add ``--format human|json`` (human by default) to ``parser``.

    Args:
        parser: The sub-command's parser.
        text_alias: Also accept ``text`` for ``human`` (for commands that used to offer it);
            the parser's epilog should then say so (see :data:`TEXT_ALIAS_EPILOG`).
    """
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="human",
        type=_format_value if text_alias else str,
        help="human-readable output (default) or JSON for machines",
    )


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None, the way JSON says "not measured"."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()  # a numpy scalar (pandas rows), as the Python number it holds
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dump_json(body: Any) -> str:
    """``body`` as strict JSON (no NaN, which jq and browsers reject); paths as strings."""
    return json.dumps(_finite(body), indent=2, allow_nan=False, default=str)
