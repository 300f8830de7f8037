"""A real notebook, executed by a real Jupyter kernel: cards, mid-run traces and inline plots.

The notebook is built here with nbformat and run by nbclient on an ipykernel kernel of this
interpreter (a kernelspec written to a temporary ``JUPYTER_PATH``, with ``PYTHONPATH``
pointing at the gradwatch under test), so nothing is installed and nothing downloads. The
kernel starts with its own default matplotlib backend (``MPLBACKEND`` unset): no
``%matplotlib inline`` and no pyplot, as a user's first notebook would.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import gradwatch

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

KERNEL = "gradwatch-test-python3"

SETUP = """\
import torch
from torch import nn
import gradwatch as gw
from gradwatch.report import plots

torch.manual_seed(0)
layers = []
for i in range(8):  # a deep sigmoid stack: its gradient vanishes toward the input
    layers += [nn.Linear(8, 8), nn.Sigmoid()]
model = nn.Sequential(*layers, nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(64, 8), torch.randn(64, 1)

def train(steps):
    for _ in range(steps):
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.log(loss=loss)

w = gw.watch(model, opt, run_dir="nb-run")
train(15)
"""
MID_RUN = "w.trace  # mid-run: flushes what was recorded so far"
MID_RUN_CHECK = "assert w.trace.steps[-1] == 14 and not w.trace.run_dir is None; len(w.trace)"
FINISH = "train(15)\nw.close()\ntrace = gw.load('nb-run')\nfindings = gw.diagnose(trace)\nfindings"
FINDING = "findings[0]"
PLOT = "plots.plot_gradient_flow(trace)"
PYPLOT = "import matplotlib.pyplot as plt\nplots.plot_loss(trace)"


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kernelspec for this interpreter in a temporary JUPYTER_PATH; returns the work dir."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    src = str(Path(gradwatch.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (gradwatch under test)",
        "language": "python",
        "env": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # Keep the user's Jupyter config and runtime out of it.
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel picks its own, as for a user
    work = tmp_path / "work"
    work.mkdir()
    return work


def _outputs(cell: Any, output_type: str | None = None) -> list[Any]:
    return [o for o in cell.outputs if output_type is None or o.output_type == output_type]


def _data(cell: Any) -> dict[str, Any]:
    """The mime bundle of the cell's result (its execute_result)."""
    results = _outputs(cell, "execute_result")
    assert len(results) == 1, cell.outputs
    return dict(results[0].data)


def test_notebook_shows_cards_and_inline_plots(kernel_env: Path) -> None:
    """Trace, diagnosis and finding show HTML cards; plots show as PNG without pyplot."""
    nb = nbformat.v4.new_notebook()
    sources = [SETUP, MID_RUN, MID_RUN_CHECK, FINISH, FINDING, PLOT, PYPLOT]
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": KERNEL, "language": "python"}
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=120, resources={"metadata": {"path": str(kernel_env)}}
    )
    client.execute()
    cells = nb.cells
    for cell in cells:
        assert not _outputs(cell, "error"), cell.outputs
    _setup, mid, mid_check, finish, finding, plot, pyplot = cells

    # w.trace mid-run: a card of the 15 steps recorded so far, its sparkline along depth.
    card = _data(mid)["text/html"]
    assert "gradwatch Trace: nb-run" in card and "<svg" in card and "15 recorded steps" in card
    assert _data(mid_check)["text/plain"] == "15"

    # The diagnosis: a card with the verdict, the sparkline and each finding's severity.
    diag = _data(finish)
    assert "gradwatch diagnosis of nb-run" in diag["text/html"]
    assert "vanishing_gradient" in diag["text/html"] and "<svg" in diag["text/html"]
    assert "critical" in diag["text/html"] or "warning" in diag["text/html"]
    assert diag["text/plain"].startswith("Diagnosis of nb-run:")  # the text summary
    assert "gradwatch-card" in _data(finding)["text/html"]

    # Plots: the returned Figure displays as one PNG, before and after pyplot is imported
    # (then the inline backend's formatter draws it; the figure is not drawn twice).
    for cell in (plot, pyplot):
        pngs = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(pngs) == 1, cell.outputs
        assert pngs[0].output_type == "execute_result"
        assert base64.b64decode(pngs[0].data["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    # stderr holds only the live diagnosis's lines (gw.watch's on_finding="warn"), each once.
    stderr = "".join(
        o.text for c in cells for o in c.outputs if o.output_type == "stream" and o.name == "stderr"
    )
    lines = stderr.splitlines()
    assert all(line.startswith("gradwatch: step ") for line in lines), stderr
    assert len(lines) == len(set(lines)), stderr
