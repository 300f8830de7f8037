"""Studies at test size: each still shows the direction of the published effect.

The verdict (``held``) uses the full-size criterion; these tests check the direction only,
at a size of a few seconds (those slower than ~10 s on a loaded 2-core runner are slow).
"""

from __future__ import annotations

import numpy as np
import pytest

from gradwatch.lab.studies import STUDIES, StudyOutcome, markdown_table, run_study


def test_registry_lists_every_study_with_claim_and_criterion() -> None:
    """Every study module states a citation, a claim and a pre-set criterion."""
    assert len(list(STUDIES)) == 10
    for name, module in STUDIES.items():
        assert name == module.NAME
        assert module.CITATION and module.CLAIM and module.CRITERION


def test_unknown_study_names_the_known_ones() -> None:
    """Asking for an unknown study lists the available ones."""
    with pytest.raises(KeyError, match="glorot2010"):
        run_study("smith2020", "test")


def test_markdown_table_has_one_row_per_outcome() -> None:
    """The docs table has a header and one row per study, pipes escaped."""
    o = StudyOutcome("x", "c", "claim | with pipe", "crit", "meas", True, seconds=1.0)
    table = markdown_table([o, o])
    assert table.count("\n") == 4 and "claim / with pipe" in table


def test_glorot2010_direction() -> None:
    """Standard init shrinks the back-propagated gradient toward the input more than Xavier."""
    o = run_study("glorot2010", "test")
    std, xav = np.mean(o.numbers["ratio"]["standard"]), np.mean(o.numbers["ratio"]["xavier"])
    assert std < 0.5 and std < xav


def test_klambauer2017_direction() -> None:
    """SELU keeps the deepest activations near unit std; ReLU with LeCun init does not."""
    o = run_study("klambauer2017", "test")
    selu_std, relu_std = o.numbers["selu"][-1][1], o.numbers["relu"][-1][1]
    assert abs(selu_std - 1) < abs(relu_std - 1)
    assert o.held


def test_ioffe2015_direction() -> None:
    """Batch norm makes the deep sigmoid MLP learn."""
    o = run_study("ioffe2015", "test")
    assert np.mean(o.numbers["batchnorm"]) > np.mean(o.numbers["plain"]) + 0.2


def test_pascanu2013_direction() -> None:
    """Clipping removes the instability of the exploding-regime RNN."""
    o = run_study("pascanu2013", "test")
    assert o.numbers["unstable_plain"] > o.numbers["unstable_clipped"] == 0


def test_he2015_direction() -> None:
    """He init learns more than Xavier init in a 30-layer ReLU MLP."""
    o = run_study("he2015", "test")
    assert np.mean(o.numbers["he"]) > np.mean(o.numbers["xavier"]) + 0.05


@pytest.mark.slow
def test_he2016_direction() -> None:
    """The deep plain net ends at a higher training loss than the shallow one and the deep
    residual net."""
    o = run_study("he2016", "test")
    losses = {k: np.mean(v) for k, v in o.numbers.items()}
    shallow, deep, resid = (losses[k] for k in sorted(losses, key=_order))
    assert deep > shallow and resid < deep


def _order(key: str) -> tuple[int, int]:
    kind, depth = key.split("-")
    return (int(depth), kind == "residual")


def test_bengio2007_direction() -> None:
    """Layer-wise pretraining beats random init on the deep sigmoid MLP."""
    o = run_study("bengio2007", "test")
    assert np.mean(o.numbers["pretrained"]) > np.mean(o.numbers["random"])


@pytest.mark.slow
def test_hochreiter1997_direction() -> None:
    """The LSTM's adding-problem error is below the tanh RNN's."""
    o = run_study("hochreiter1997", "test")
    assert np.mean(o.numbers["lstm"]) < np.mean(o.numbers["rnn_tanh"])


@pytest.mark.slow
def test_le2015_direction() -> None:
    """The IRNN's adding-problem error is below the tanh RNN's."""
    o = run_study("le2015", "test")
    assert np.mean(o.numbers["irnn"]) < np.mean(o.numbers["rnn_tanh"])


def test_schoenholz2017_direction() -> None:
    """The measured gradient factor grows with sigma_w and tracks chi_1 within 20%."""
    o = run_study("schoenholz2017", "test")
    measured, predicted = o.numbers["measured"], o.numbers["predicted"]
    assert measured == sorted(measured)
    assert all(abs(m / p - 1) < 0.2 for m, p in zip(measured, predicted, strict=True))


def test_chi_1_the_study_uses_matches_closed_forms() -> None:
    """The study's chi_1 (gradwatch.theory) gives sigma_w^2 at sigma_b=0 for tiny sigma_w
    (linear regime, tanh'(0) = 1) and matches a Monte Carlo estimate at sigma_w = 2."""
    from gradwatch.lab.studies.schoenholz2017 import chi_1_tanh

    assert chi_1_tanh(0.5, 0.0) == pytest.approx(0.25, rel=1e-6)
    rng = np.random.default_rng(0)
    q = 1.0
    z = rng.standard_normal(200_000)
    for _ in range(50):  # q* by Monte Carlo (converges in a few iterations at sigma_w = 2)
        q = 4 * np.mean(np.tanh(np.sqrt(q) * z) ** 2) + 0.05**2
    mc = 4 * np.mean((1 - np.tanh(np.sqrt(q) * z) ** 2) ** 2)
    assert chi_1_tanh(2.0, 0.05) == pytest.approx(mc, rel=0.01)


def test_study_predictions_are_the_theory_package() -> None:
    """The study's predicted chi_1 is gradwatch.theory.chi_1 at the study's sigma_b."""
    from gradwatch.lab.studies.schoenholz2017 import SIGMA_B, chi_1_tanh
    from gradwatch.theory import chi_1

    for sigma_w in (0.8, 1.0, 1.5, 2.5):
        assert chi_1_tanh(sigma_w) == chi_1("tanh", sigma_w, SIGMA_B)
