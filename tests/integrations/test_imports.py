"""Importing gradwatch.integrations imports no framework; each callback module imports its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

_FRAMEWORKS = ("pytorch_lightning", "lightning", "transformers", "accelerate")


def _loaded_after(statement: str) -> list[str]:
    code = (
        f"import sys; {statement}; print(' '.join(m for m in {_FRAMEWORKS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_package_imports_no_framework() -> None:
    """`import gradwatch.integrations` (and gw.watch with it) loads none of the frameworks."""
    assert _loaded_after("import gradwatch.integrations, gradwatch; gradwatch.watch") == []


@pytest.mark.parametrize(
    ("module", "framework"),
    [("lightning", "pytorch_lightning"), ("transformers", "transformers")],
)
def test_each_callback_module_imports_its_framework(module: str, framework: str) -> None:
    """Each callback module loads its framework (the package alone loads none)."""
    pytest.importorskip(framework)
    assert framework in _loaded_after(f"import gradwatch.integrations.{module}")
