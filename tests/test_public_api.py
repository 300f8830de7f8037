"""The public API: importing is cheap and every exported name resolves."""

from __future__ import annotations

import subprocess
import sys

import gradwatch


def test_every_public_name_resolves() -> None:
    """Each name in __all__ is importable from gradwatch."""
    for name in gradwatch.__all__:
        assert getattr(gradwatch, name) is not None


def test_all_matches_the_lazy_export_table() -> None:
    """__all__ lists exactly the lazily exported names plus __version__."""
    assert set(gradwatch.__all__) == {"__version__", *gradwatch._EXPORTS}


def test_import_has_no_heavy_side_effects() -> None:
    """`import gradwatch` does not import torch, matplotlib or pandas."""
    code = (
        "import sys, gradwatch; "
        "print(','.join(m for m in ('torch', 'matplotlib', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
