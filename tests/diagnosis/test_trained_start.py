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
