"""Every ``Example:`` in a docstring of the package runs and prints what it says.

Docstring examples are documentation users copy; this runs them as doctests, module by
module, as ``pytest --doctest-modules`` would (which the suite's ``testpaths`` do not reach).
Examples that need a recorded run or a model the reader has are marked ``+SKIP``.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import gradwatch


def _modules() -> list[str]:
    # __main__ runs the CLI when imported
    found = pkgutil.walk_packages(gradwatch.__path__, prefix="gradwatch.")
    return sorted(m.name for m in found if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    found = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    for test in found:
        if test.examples:
            runner.run(test, clear_globs=True)
    failed = runner.summarize(verbose=False).failed
    assert failed == 0, f"{failed} docstring example(s) of {name} failed (printed above)"
