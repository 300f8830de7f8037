"""The sibling packages the lab uses when they are present (diagnosis, remedies, report).

Looked up by name so the lab runs, and says what it skipped, in builds that lack one.
"""

from __future__ import annotations

import importlib
from typing import Any


def optional(module: str, name: str) -> Any:
    """``module.name`` or None when the module or the attribute does not exist."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
