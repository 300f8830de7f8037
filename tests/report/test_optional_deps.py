"""Optional dependencies: not imported up front, and a clear install hint when missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gradwatch.report import console, export_tensorboard, plots, render_report
from gradwatch.trace import Trace

from .conftest import make_trace


def test_importing_report_loads_no_optional_dependency() -> None:
    """`import gradwatch.report` does not import matplotlib, jinja2, rich, tensorboard or torch."""
    code = (
        "import sys, gradwatch.report, gradwatch.report.console, gradwatch.report.plots; "
        "heavy = ('matplotlib', 'jinja2', 'rich', 'tensorboard', 'torch'); "
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    ("module", "call", "extra"),
    [
        ("matplotlib", plots.plot_loss, "report"),
        ("jinja2", lambda t: render_report(t, []), "report"),
        ("rich", lambda t: console.findings_table([]), "report"),
        (
            "torch.utils.tensorboard",
            lambda t: export_tensorboard(t, "/nonexistent/x"),
            "tensorboard",
        ),
    ],
)
def test_missing_extra_raises_with_install_hint(
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    call,
    extra: str,  # type: ignore[no-untyped-def]
) -> None:
    """With the package hidden, the function raises ImportError naming the pip extra."""
    trace: Trace = make_trace(n_steps=3, recurrent=False)
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(ImportError, match=rf'pip install "gradwatch\[{extra}\]"'):
        call(trace)
