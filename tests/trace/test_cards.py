"""The Jupyter card of a Trace and its sparkline, checked against a numpy reference."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import numpy as np

from gradwatch.trace import LayerInfo, Trace
from gradwatch.trace.cards import depth_profile, sparkline_svg

SVG = "{http://www.w3.org/2000/svg}"


def _trace() -> Trace:
    layers = [
        LayerInfo("fc0", "Linear", 0, 10),
        LayerInfo("ln", "LayerNorm", 1, 10),
        LayerInfo("fc1", "Linear", 2, 10),
        LayerInfo("never", "Linear", 3, 10),
        LayerInfo("fc2", "Linear", 4, 10),
    ]
    g = np.array(
        [
            [1e-4, 1e-2, 1e-3, np.nan, 1.0],
            [1e-3, 1e-2, 0.0, np.nan, 1.0],  # a zero is not drawn on a log axis
            [1e-5, 1e-2, 1e-2, np.nan, 2.0],
            [np.nan, np.nan, np.nan, np.nan, np.nan],  # an unmeasured step
        ]
    )
    return Trace.from_arrays(layers, [0, 1, 2, 3], {"grad_rms": g}, scalars={"loss": [3, 2, 1, 1]})


def test_depth_profile_is_the_median_of_the_positive_measured_values() -> None:
    """Each layer's value is the median of its positive finite values; none -> NaN."""
    p = depth_profile(_trace())
    assert p is not None
    ref = [np.median([1e-4, 1e-3, 1e-5]), 1e-2, np.median([1e-3, 1e-2]), math.nan, 1.0]
    assert np.allclose(p.values, ref, equal_nan=True)
    assert p.norm == (False, True, False, False, False)
    assert p.labels[1] == "L1 ln" and p.window == "steps 0-2"


def test_depth_profile_is_none_without_gradients() -> None:
    """A trace with no grad_rms, or none measured, has no profile (the card draws none)."""
    assert depth_profile(Trace.from_arrays(["a"], [0], {})) is None
    assert depth_profile(Trace.from_arrays(["a"], [0], {"grad_rms": [[0.0]]})) is None


def test_sparkline_heights_follow_log10_of_the_values() -> None:
    """Dot heights are linear in log10(value); norm layers hollow; missing layers leave gaps."""
    p = depth_profile(_trace())
    assert p is not None
    root = ET.fromstring(sparkline_svg(p, height=64))
    dots = root.findall(f"{SVG}circle")
    assert len(dots) == 4  # "never" has no value
    ys = np.array([float(d.get("cy")) for d in dots])
    logs = np.log10([v for v in p.values if math.isfinite(v)])
    # y = a + b * log10(v) with b < 0 (up is larger); the fit through all four is exact.
    b, a = np.polyfit(logs, ys, 1)
    assert b < 0 and np.allclose(a + b * logs, ys, atol=0.11)
    assert ys.max() - ys.min() == 52  # the padded height: lowest at the bottom, highest top
    fills = [d.get("fill") for d in dots]
    assert fills[1] == "#fff" and fills[0] != "#fff"  # L1 is the norm layer
    lines = root.findall(f"{SVG}polyline")
    assert [len(line.get("points").split()) for line in lines] == [3]  # fc2 stands alone
    assert "L1 ln (norm layer)" in dots[1].find(f"{SVG}title").text


def test_sparkline_highlights_named_columns() -> None:
    """Highlighted columns are drawn larger, in the severity colour."""
    p = depth_profile(_trace())
    assert p is not None
    root = ET.fromstring(sparkline_svg(p, highlight=[0], highlight_kind="warning"))
    first, second = root.findall(f"{SVG}circle")[:2]
    assert float(first.get("r")) > float(second.get("r"))
    assert first.get("stroke") == "#b35806"


def test_trace_card_says_size_loss_ratio_and_draws_depth() -> None:
    """The card names the run's size, loss, first/last ratio (Trace.grad_ratio) and depth."""
    t = _trace()
    html = t._repr_html_()
    root = ET.fromstring(html)
    text = " ".join(root.itertext())
    assert "5 layers" in text and "4 recorded steps" in text and "loss 3 → 1" in text
    ratio = t.grad_ratio("median")
    assert f"{ratio.value:.2g}" in text and ratio.label in text
    assert root.find(f".//{SVG}svg") is not None
    assert "hollow dots: norm layers" in text
    assert re.search(r"\(in memory\)", text)


def test_a_long_run_profile_reads_evenly_spaced_steps() -> None:
    """Beyond PROFILE_MAX_ROWS steps the medians are over that many evenly spaced steps,
    first and last included, and the window says so."""
    from gradwatch.trace.cards import PROFILE_MAX_ROWS

    n = 3 * PROFILE_MAX_ROWS + 7
    rng = np.random.default_rng(0)
    g = np.exp(rng.normal(size=(n, 3)))
    p = depth_profile(Trace.from_arrays(["a", "b", "c"], range(n), {"grad_rms": g}))
    assert p is not None
    keep = np.unique(np.linspace(0, n - 1, PROFILE_MAX_ROWS).round().astype(int))
    assert np.allclose(p.values, np.median(g[keep], axis=0))
    assert p.window == f"{PROFILE_MAX_ROWS} of the {n} steps 0-{n - 1}"
