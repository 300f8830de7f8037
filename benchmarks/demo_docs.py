"""Run ``gradwatch demo`` once and write what the docs show of it: the comparison table of
docs/lab.md and the screenshot docs/report.png of the demo's own HTML report.

One demo run feeds both, so the table and the picture always show the same runs. The
screenshot is taken by headless Chromium (``chromium --headless --screenshot``), quantised
to 256 colours, and described in ``docs/report.png.json`` (the demo's settings, its arms,
the runs the report shows, the commit), which ``tests/docs/test_generated.py`` compares with
the demo as it is now.

Run from the repository root (about a minute on 2 CPU cores, one torch thread):

    PYTHONPATH=src python benchmarks/demo_docs.py --write-docs --screenshot
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The shared writer of generated doc blocks, beside this file (also when imported by tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _docs

SCRIPT = "benchmarks/demo_docs.py"
COLUMNS = ("run", "test acc", "first/last grad RMS", "s", "findings after")
#: Block name -> the header cells of the tables it holds (tests/docs/test_generated.py).
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {"": [COLUMNS]}
ROOT = Path(__file__).resolve().parents[1]
PNG = ROOT / "docs" / "report.png"
PNG_JSON = ROOT / "docs" / "report.png.json"
#: The browser window: wide enough for the report's two-column layout (>= ~1450 px).
WINDOW = (1600, 2330)


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The comparison table's cells, from ``gradwatch.lab.demo.comparison_rows``."""
    from gradwatch.lab.demo import format_ratio

    baseline_rules = rows[0]["findings"]
    cells = []
    for i, row in enumerate(rows):
        acc = f"{row['test_accuracy']:.3f}"
        findings = row["findings"]
        if i > 0 and findings == baseline_rules and findings != "none":
            findings = "(as baseline)"
        cells.append(
            [row["run"], acc, format_ratio(row["grad_ratio"]), f"{row['seconds']:.1f}", findings]
        )
    return cells


def screenshot(html: Path, png: Path) -> None:
    """Headless Chromium's picture of ``html`` at :data:`WINDOW`, quantised to 256 colours."""
    from PIL import Image

    binary = next(
        (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
    )
    if binary is None:
        raise SystemExit("headless Chromium is needed: apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="gw-chromium-") as profile:
        subprocess.run(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                "--disable-background-networking",
                f"--user-data-dir={profile}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                f"--screenshot={png}",
                html.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    # 256 colours take the PNG from ~570 KB to ~250 KB with no visible change.
    image = Image.open(png).convert("RGB")
    image.quantize(256, dither=Image.Dither.NONE).save(png, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="demo output directory (default: a temporary one)")
    parser.add_argument("--write-docs", action="store_true", help="update docs/lab.md's table")
    parser.add_argument(
        "--screenshot", action="store_true", help="write docs/report.png and report.png.json"
    )
    args = parser.parse_args()

    import torch

    from gradwatch.lab.demo import DemoConfig, comparison_rows, run_demo, write_demo_report

    torch.set_num_threads(1)  # as the demo's CLI: one thread
    docs = _docs
    config = DemoConfig()
    out = Path(args.out or tempfile.mkdtemp(prefix="gw-demo-"))
    started = time.perf_counter()
    outcome = run_demo(out, config)
    demo_s = time.perf_counter() - started
    rows = comparison_rows(outcome)
    table = docs.table(COLUMNS, table_rows(rows))
    print(table)
    print(f"\ndemo: {demo_s:.0f} s without the report")
    if args.write_docs:
        body = (
            docs.header(
                f"PYTHONPATH=src python {SCRIPT} --write-docs --screenshot",
                f"`gradwatch demo`'s runs at its defaults ({config.depth} layers, "
                f"{config.steps} steps, seed {config.seed}), one torch thread; the demo took "
                f"{demo_s:.0f} s without the report.",
            )
            + "\n\n"
            + table
        )
        docs.replace_block(ROOT / "docs" / "lab.md", SCRIPT, body)
        print("updated docs/lab.md")
    if args.screenshot:
        html = write_demo_report(outcome, out)
        screenshot(html, PNG)
        report_runs = _report_labels(outcome)
        PNG_JSON.write_text(
            json.dumps(
                {
                    "generated_by": f"PYTHONPATH=src python {SCRIPT} --screenshot",
                    "commit": docs.commit(),
                    "machine": docs.machine(),
                    "demo_config": dataclasses.asdict(config),
                    "arms": [r["run"] for r in rows],
                    "report_runs": report_runs,
                    "window": list(WINDOW),
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {PNG.relative_to(ROOT)} ({PNG.stat().st_size // 1024} KB) and its .json")


def _report_labels(outcome: Any) -> list[str]:
    """The runs the demo's HTML report shows, as labelled there."""
    from gradwatch.lab.demo import BASELINE_LABEL, report_rows

    return [BASELINE_LABEL] + [r.label for r in report_rows(outcome)]


if __name__ == "__main__":
    main()
