"""The demo's library core at reduced size, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gradwatch as gw
from gradwatch.lab.demo import (
    STANDARD_REMEDIES,
    DemoConfig,
    comparison_rows,
    explain_vanishing,
    format_ratio,
    run_demo,
)

SMALL = DemoConfig(depth=8, width=16, steps=40, sample_every=10)


def test_reduced_demo_end_to_end(tmp_path: Path) -> None:
    """A reduced demo writes one loadable run per arm, and its table comes from those runs."""
    events: list[str] = []
    outcome = run_demo(
        tmp_path,
        SMALL,
        remedies=(("relu", "init_he"), ("batchnorm",)),
        on_event=lambda kind, _p: events.append(kind),
    )
    assert events == ["baseline", "diagnosis", "row", "row"]
    rows = comparison_rows(outcome)
    assert [r["run"] for r in rows] == ["baseline: sigmoid", "ReLU + He init", "batch norm"]
    for row, result in zip(
        rows, [outcome.baseline] + [r.result for r in outcome.rows], strict=True
    ):
        trace = gw.load(result.run_dir)
        rms = trace.matrix("grad_rms")
        assert row["grad_ratio"] == np.median(rms[:, 0] / rms[:, -1])
        assert row["test_accuracy"] == result.test_metric
    # The remedies act on the gradient: ReLU + He passes far more of it to the first layer.
    assert rows[1]["grad_ratio"] > 100 * rows[0]["grad_ratio"]


def test_explain_vanishing_measures_where_and_why(tmp_path: Path) -> None:
    """The explanation's ratio is the trace's median first/last ratio (the number the table
    prints), its per-layer factor compounds to it, and the sigmoid slope it estimates is at
    most 0.25."""
    outcome = run_demo(tmp_path, SMALL, remedies=())
    d = explain_vanishing(outcome.baseline)
    matrix = outcome.baseline.trace.matrix("grad_rms")
    rms = np.nanmedian(matrix, axis=0)
    assert d["ratio"] == np.median(matrix[:, 0] / matrix[:, -1])
    assert d["ratio"] == outcome.baseline.grad_ratio
    assert np.allclose(d["relative_rms"], rms / rms[-1])
    assert np.isclose(d["per_layer"] ** (len(rms) - 1), d["ratio"])
    assert 0 < d["sigmoid_slope"] <= 0.25
    assert set(d["below"]) <= set(d["layers"])


def test_standard_remedies_cover_the_issue_list() -> None:
    """Without a prescription the demo tries the seven classic fixes for vanishing gradients."""
    flat = {r for group in STANDARD_REMEDIES for r in group}
    assert flat == {
        "relu", "init_he", "batchnorm", "residual", "init_lsuv", "clip_norm", "reduce_depth",
        "layerwise_pretraining",
    }  # fmt: skip


def test_format_ratio() -> None:
    """Ratios print as plain decimals in [0.01, 100) and in scientific notation otherwise."""
    assert format_ratio(0.5) == "0.50"
    assert format_ratio(3.2e-16) == "3.2e-16"
    assert format_ratio(float("nan")) == "n/a"


@pytest.mark.slow
def test_demo_report_shows_baseline_best_single_and_combined(tmp_path: Path) -> None:
    """The report covers the baseline, the most accurate single remedy and the combined fix."""
    from gradwatch.lab.demo import COMBINED, write_demo_report

    outcome = run_demo(tmp_path, SMALL, remedies=(("batchnorm",), ("clip_norm",), COMBINED))
    path = write_demo_report(outcome, tmp_path)
    if path is None:
        pytest.skip("gradwatch.report is not in this build")
    html = path.read_text()
    best = max(outcome.rows[:2], key=lambda r: r.result.test_metric).label
    assert "baseline (sigmoid)" in html and best in html


def test_demo_verdict_table_and_report_agree(tmp_path: Path) -> None:
    """Issue 12: the verdict's first remedy is gw.prescribe's first among the arms the demo
    did not measure as failing: the best single arm of the table with no critical finding
    left. The console verdict, the table and the HTML report say the same, with the
    first/last ratio labelled by its window."""
    from gradwatch.lab.demo import (
        BASELINE_LABEL,
        demo_verdict,
        measured_ranking,
        write_demo_report,
    )

    arms = (("relu", "init_he"), ("batchnorm",), ("init_xavier",))
    outcome = run_demo(tmp_path, SMALL, remedies=arms)
    rows = comparison_rows(outcome)[1:]  # the single-remedy arms, in run order
    ok = [
        (row, arm)
        for row, arm, r in zip(rows, arms, outcome.rows, strict=True)
        if not any(f["severity"] == "critical" for f in r.result.findings)
    ]
    best = max(row["test_accuracy"] for row in rows)
    # reference: the arms neither critical nor below another arm's accuracy, in the order
    # gw.prescribe ranks them for the baseline's findings and the demo's model
    order = [p.remedy for p in outcome.prescriptions]
    winners = sorted(
        (arm[0] for row, arm in ok if row["test_accuracy"] >= best),
        key=lambda r: order.index(r) if r in order else len(order),
    )
    ranked, failed = measured_ranking(outcome)
    assert [c.remedy for c in ranked if c.remedy not in failed] == winners
    assert set(failed) == {arm[0] for arm in arms} - set(winners)
    lines = demo_verdict(outcome)
    first = next(line for line in lines if line.startswith("First thing to try: "))
    if winners:
        assert first.startswith(f"First thing to try: {winners[0]} (")
    for remedy in failed:
        assert not first.startswith(f"First thing to try: {remedy} ")
    # the labelled ratio: the table's number and window, the baseline's median over steps
    base = comparison_rows(outcome)[0]
    assert base["grad_ratio_label"] == "median over steps 0-39"
    ratio_line = next(line for line in lines if line.startswith("First/last layer"))
    assert f"{base['grad_ratio']:.2g} (median over steps 0-39" in ratio_line

    report = write_demo_report(outcome, tmp_path).read_text(encoding="utf-8")
    start = report.index(f'aria-label="verdict for {BASELINE_LABEL}"')
    import html as html_lib

    head = html_lib.unescape(report[start : report.index("</section>", start)])
    assert f"<p>{first}</p>" in head and f"<p>{ratio_line}</p>" in head
    assert BASELINE_LABEL in report
