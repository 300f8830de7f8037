"""The theory package's surface: cheap import, public names, gw.theory."""

from __future__ import annotations

import subprocess
import sys

import gradwatch as gw
from gradwatch import theory


def test_import_theory_does_not_import_torch() -> None:
    """`import gradwatch.theory` needs numpy only; torch loads when a model is passed."""
    code = "import sys, gradwatch.theory; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_gw_theory_is_the_sub_module() -> None:
    """gw.theory is the gradwatch.theory module, and every name in its __all__ resolves."""
    assert gw.theory is theory
    for name in theory.__all__:
        assert getattr(theory, name) is not None
