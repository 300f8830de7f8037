"""Published results reproduced at CPU size: ``run_study(name, size)`` and ``STUDIES``.

Each study module states the paper's claim with its citation and a tolerance written before
the run (``CRITERION``), runs a small version over several seeds and says whether it held.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .base import SIZES, Size, StudyOutcome, markdown_table, studies_page

_NAMES: tuple[str, ...] = (
    "glorot2010",
    "he2015",
    "hochreiter1997",
    "pascanu2013",
    "schoenholz2017",
    "klambauer2017",
    "he2016",
    "ioffe2015",
    "bengio2007",
    "le2015",
)


class _Registry(dict[str, ModuleType]):
    """Study name -> module, imported on first access (torch loads only when needed)."""

    def __missing__(self, name: str) -> ModuleType:
        if name not in _NAMES:
            raise KeyError(f"no study {name!r}; studies: {', '.join(_NAMES)}")
        module = importlib.import_module(f"{__name__}.{name}")
        self[name] = module
        return module

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(_NAMES)

    def items(self):  # type: ignore[no-untyped-def]
        return [(n, self[n]) for n in _NAMES]


STUDIES: dict[str, ModuleType] = _Registry()


def run_study(name: str, size: Size = "full") -> StudyOutcome:
    """Run one study and return its claim-vs-measured outcome.

    Example:
        >>> run_study("klambauer2017", size="test").held  # doctest: +SKIP
        True
    """
    if size not in SIZES:
        raise ValueError(f"size={size!r}: use one of {list(SIZES)}")
    outcome: StudyOutcome = STUDIES[name].run(size)
    return outcome


__all__ = ["SIZES", "STUDIES", "StudyOutcome", "markdown_table", "run_study", "studies_page"]
