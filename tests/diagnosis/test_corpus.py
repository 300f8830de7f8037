"""The corpus: real models broken by construction are diagnosed; healthy ones stay quiet.

Each model (benchmarks/diagnosis_corpus.py) trains for 80-200 steps on one CPU thread under
``gw.watch``; the assertions are the pathologies built into it, not recorded outputs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from gradwatch.diagnosis import SEVERITY_RANK, Finding


def _corpus() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "diagnosis_corpus.py"
    spec = importlib.util.spec_from_file_location("diagnosis_corpus", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["diagnosis_corpus"] = module
    spec.loader.exec_module(module)
    return module


corpus = _corpus()
_cache: dict[str, list[Finding]] = {}


def findings_of(name: str) -> list[Finding]:
    if name not in _cache:
        _, _cache[name], _ = corpus.run_case(corpus.CORPUS[name])
    return _cache[name]


def _alarms(findings: list[Finding]) -> dict[str, Finding]:
    return {f.rule: f for f in findings if SEVERITY_RANK[f.severity] >= SEVERITY_RANK["warning"]}


BROKEN = [n for n, c in corpus.CORPUS.items() if not c.healthy]
HEALTHY = [n for n, c in corpus.CORPUS.items() if c.healthy]


@pytest.mark.parametrize("name", BROKEN)
def test_broken_model_is_diagnosed(name: str) -> None:
    """Each broken model raises (at least warning) every rule its construction implies."""
    alarms = _alarms(findings_of(name))
    missing = [r for r in corpus.CORPUS[name].expect if r not in alarms]
    assert not missing, f"{name}: expected {missing}; got {sorted(alarms)}"


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_model_has_no_warning(name: str) -> None:
    """Healthy controls produce no warning or critical finding."""
    alarms = _alarms(findings_of(name))
    assert not alarms, f"{name}: " + "; ".join(f.message for f in alarms.values())


def test_nan_injected_layer_is_named_first() -> None:
    """The NaN put in the 2nd Linear's gradient at step 60 is reported there, at step 60."""
    f = _alarms(findings_of("nan_injected"))["nonfinite_gradient"]
    assert f.severity == "critical"
    assert f.layers[0] == "2"
    assert f.evidence["first_bad_step"] == 60


def test_sigmoid_vanishing_names_a_drop_and_the_bound() -> None:
    """The deep sigmoid MLP's finding locates a drop and explains the 0.25 bound."""
    f = _alarms(findings_of("deep_sigmoid_mlp"))["vanishing_gradient"]
    assert f.evidence["largest_drop"]["source"] == "out_grad_norm"
    assert f.evidence["largest_drop"]["factor"] > 1.0
    assert "0.25" in f.message
    sat = _alarms(findings_of("deep_sigmoid_mlp"))["saturated_activation"]
    assert sat.layers[0] == "0"  # the first layer is the one built to saturate


def test_rnn_short_memory_reports_a_horizon_shorter_than_the_sequence() -> None:
    """The 60-step tanh RNN's horizon (1% of the gradient) is well inside its 60 steps."""
    f = _alarms(findings_of("vanilla_rnn_long"))["short_memory"]
    assert f.layers == ("rnn",)
    assert 0 < f.evidence["horizon_steps"] < 60
    assert f.evidence["sequence_length"] == 60


def test_weight_decay_collapse_names_the_weights() -> None:
    """Strong weight decay shrinks every Linear; the finding lists them, worst first."""
    f = _alarms(findings_of("strong_weight_decay"))["collapsing_weights"]
    ratios = list(f.evidence["final_over_initial"].values())
    assert ratios == sorted(ratios) and ratios[0] < 0.1
