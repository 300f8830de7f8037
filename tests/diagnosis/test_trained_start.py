"""The untrained level of a loss, read from its graph's record, and the start under half of it
that says a model started trained (a real resumed model: tests/integrations/
test_resumed_model.py)."""

from __future__ import annotations

import numpy as np
import pytest

from gradwatch.diagnosis.trained_start import TRAINED_SHARE, trained_start_clause, untrained_loss
from gradwatch.trace import Trace


def _trace(graph: dict[str, object] | None) -> Trace:
    trace = Trace.from_arrays(["fc"], np.arange(4), {"grad_rms": np.ones((4, 1))})
    if graph is not None:
        trace.meta["config"] = {"loss_graph": graph}
    return trace


@pytest.mark.parametrize(
    ("graph", "level"),
    [
        ({"kind": "cross_entropy", "classes": 10}, np.log(10)),
        ({"kind": "bce_with_logits", "classes": None}, np.log(2)),
        ({"kind": "cross_entropy", "classes": None}, None),  # the width could not be read
        ({"kind": None, "classes": None}, None),  # a regression loss
        ({"kind": "nll_loss", "classes": None}, None),  # nll of no log-softmax: no level
        (None, None),  # no graph read (a loss logged as a float, an older trace)
    ],
)
def test_the_untrained_level_is_known_only_from_the_loss_s_graph(
    graph: dict[str, object] | None, level: float | None
) -> None:
    seen = untrained_loss(_trace(graph))
    assert (None if seen is None else seen[0]) == pytest.approx(level)


def test_a_start_under_half_the_untrained_level_is_a_trained_start() -> None:
    trace = _trace({"kind": "cross_entropy", "classes": 10})
    below = TRAINED_SHARE * np.log(10) * 0.99
    assert trained_start_clause(trace, float(below)) is not None
    assert trained_start_clause(trace, float(TRAINED_SHARE * np.log(10))) is None
    assert trained_start_clause(trace, 2.3) is None  # an untrained start
    assert trained_start_clause(trace, -1.0) is None  # no fraction of it
    assert trained_start_clause(None, 0.1) is None


def test_the_start_is_read_in_the_logged_loss_s_units() -> None:
    """A manual accumulation over 8 micro-batches logs the loss divided by 8 (its multiple
    of the mean, 0.125, read from its graph): an untrained start of log(10)/8 is no trained
    start there, and the clause says the level in those units; unknown (a loss with another
    term), the start is read as it is."""
    trace = _trace({"kind": "cross_entropy", "classes": 10, "multiple": 0.125})
    assert trained_start_clause(trace, float(np.log(10) / 8)) is None
    said = trained_start_clause(trace, float(np.log(10) / 8 * 0.4))
    assert said is not None and "times 0.125 (the logged loss is that multiple" in said
    unknown = _trace({"kind": "cross_entropy", "classes": 10, "multiple": None})
    assert trained_start_clause(unknown, float(np.log(10) / 8)) is not None
