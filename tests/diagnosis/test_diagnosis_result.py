"""``diagnose`` returns a Diagnosis: a list of findings that also shows itself."""

from __future__ import annotations

import copy
import json
import pickle
import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np

import gradwatch as gw
from gradwatch.diagnosis import Diagnosis, Finding, RemedyHint
from gradwatch.trace import LayerInfo, Trace


def _vanishing() -> Trace:
    g = np.tile(10.0 ** -np.arange(12.0)[::-1], (30, 1))
    layers = [LayerInfo(f"l{i}", "Linear", i, 10) for i in range(12)]
    return Trace.from_arrays(layers, range(30), {"grad_rms": g}, meta={"name": "deep"})


def test_diagnose_returns_a_list_compatible_diagnosis() -> None:
    """Equal to the plain list, list repr, pickles and copies with its profile."""
    d = gw.diagnose(_vanishing())
    assert isinstance(d, Diagnosis) and isinstance(d, list)
    plain = list(d)
    assert d == plain and plain == d and repr(d) == repr(plain)
    assert [f.rule for f in d] == ["vanishing_gradient"]
    for other in (pickle.loads(pickle.dumps(d)), copy.deepcopy(d), copy.copy(d)):
        assert type(other) is Diagnosis and other == d
        assert other.profile == d.profile and other.run == "deep"
    assert json.loads(json.dumps(d.to_json())) == [f.to_json() for f in plain]


def test_healthy_diagnosis_is_empty_and_says_so() -> None:
    """A flat trace gives an empty Diagnosis == [] whose verdict says no rule fired."""
    flat = Trace.from_arrays([f"l{i}" for i in range(4)], range(30), {"grad_rms": np.ones((30, 4))})
    d = gw.diagnose(flat)
    assert d == [] and not d and d.worst == "ok"
    assert str(d) == "Diagnosis: No problem found: no rule fired."
    html = d._repr_html_()
    assert "No problem found" in html and "<svg" in html  # the flat profile is still drawn


def _finding(sev: str, rule: str, layer: str) -> Finding:
    return Finding(rule, sev, (layer,), (0, 9), {"x": 1}, f"{rule} here",  # type: ignore[arg-type]
                   (RemedyHint("residual", "skip it"),))  # fmt: skip


def test_summary_and_verdict_name_the_most_severe_finding() -> None:
    """Verdict from the worst finding; one summary line per finding; counts by severity."""
    d = Diagnosis(
        [_finding("warning", "dead_units", "b"), _finding("critical", "exploding_gradient", "a")],
        run="r1",
    )
    assert d.worst == "critical"
    assert d.verdict == "Critical — exploding_gradient here"
    assert d.counts() == {"critical": 1, "warning": 1}
    assert d.headline == "Critical — exploding gradient, and 1 more finding."
    titled = Diagnosis([replace(d[1], message="Exploding gradient: it grows.")])
    assert titled.headline == "Critical — Exploding gradient."
    lines = d.summary().splitlines()
    assert lines[0].startswith("Diagnosis of r1: Critical — exploding_gradient here (2 findings")
    assert "dead_units" in lines[1] and "exploding_gradient" in lines[2]


def test_diagnosis_card_highlights_the_layers_of_the_worst_finding() -> None:
    """The card's sparkline draws the layers the worst finding names larger, in its colour."""
    d = gw.diagnose(_vanishing())
    root = ET.fromstring(d._repr_html_())
    circles = root.findall(".//{http://www.w3.org/2000/svg}circle")
    big = {c.find("{http://www.w3.org/2000/svg}title").text.split(":")[0] for c in circles
           if float(c.get("r")) > 3}  # fmt: skip
    assert big == {f"L{int(n[1:])} {n}" for n in d[0].layers}
    text = " ".join(root.itertext())
    assert "vanishing_gradient" in text and "1 critical" in text


def test_finding_card_lists_remedies_and_evidence() -> None:
    """A finding's card: severity badge, rule, message, layers, steps, remedies, evidence."""
    f = _finding("warning", "dead_units", "net.<0>")
    root = ET.fromstring(f._repr_html_())
    text = " ".join(root.itertext())
    for part in ("warning", "dead_units", "dead_units here", "net.<0>", "steps 0–9", "residual"):
        assert part in text
