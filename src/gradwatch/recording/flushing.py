"""What a flush is: the window it empties, and what it hands its listeners."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from .watch import Watch

#: Steps per flush window: the first window when the recorder chooses (``flush_every=None``
#: under a budget), every window without a budget.
FLUSH_EVERY = 100


@dataclass(frozen=True)
class Flush:
    """What one flush sent out, as handed to each flush listener.

    Attributes:
        tables: ``(chunk kind, table)`` pairs, exactly as written to the run directory.
        end_step: Steps recorded so far (the first step not in this or any earlier flush).
        final: True for the flush made by ``close()``: no flush follows.
    """

    tables: list[tuple[str, pa.Table]]
    end_step: int
    final: bool


#: A flush listener: called on the host after each flush (see ``Watch.add_flush_listener``).
FlushListener = Callable[["Watch", Flush], None]
