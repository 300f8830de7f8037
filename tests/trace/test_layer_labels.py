"""One name per layer: ``L<depth> <module name>``, shown the same in every view (issue 12)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradwatch.diagnosis import Finding, diagnose
from gradwatch.trace import LayerInfo, Trace, layer_label


@pytest.mark.parametrize(
    ("depth", "name", "label"),
    [
        (3, "encoder.layer.1.attention.self.query", "L3 encoder.layer.1.attention.self.query"),
        (0, "", "L0 (root)"),
        (2, "_orig_mod.fc", "L2 fc"),  # torch.compile's wrapper
        (2, "module.fc", "L2 fc"),  # DistributedDataParallel's wrapper
        (5, "_orig_mod.module.blocks.0", "L5 blocks.0"),  # both
        (1, "module", "L1 module"),  # a bare name is the module's own, not a prefix
        (4, "net.module.fc", "L4 net.module.fc"),  # only a leading prefix is a wrapper's
    ],
)
def test_layer_label(depth: int, name: str, label: str) -> None:
    """The label is the depth and the module name, wrapper prefixes dropped."""
    assert layer_label(depth, name) == label
    info = LayerInfo(name=name, type="Linear", depth=depth, num_params=1)
    assert info.label == label
    assert "label" not in info.to_json()  # JSON keeps the two fields, depth and name


def test_trace_labels_by_column_and_by_name() -> None:
    """Trace.layer_label takes a column or a module name; unknown names pass through."""
    t = Trace.from_arrays(["emb", "enc.0", "head"], [0], {"grad_rms": [[1.0, 1.0, 1.0]]})
    assert t.layer_labels == ["L0 emb", "L1 enc.0", "L2 head"]
    assert [t.layer_label(i) for i in range(3)] == t.layer_labels
    assert t.layer_label("enc.0") == "L1 enc.0" and t.layer_label("other") == "other"


def test_findings_keep_names_and_carry_labels() -> None:
    """A diagnosed finding names its layers by module name (machines) and carries their
    labels (people); its JSON holds both; equality ignores the labels."""
    g = np.tile(10.0 ** -np.arange(12.0)[::-1], (30, 1))  # first layer 1e-11x the last
    names = [f"block.{i}" for i in range(12)]
    t = Trace.from_arrays(names, range(30), {"grad_rms": g})
    (f,) = diagnose(t, rules=["vanishing_gradient"])
    assert f.layers and set(f.layers) <= set(names)
    assert f.layer_labels == tuple(f"L{names.index(n)} {n}" for n in f.layers)
    assert f.shown_layers == f.layer_labels
    data = json.loads(json.dumps(f.to_json()))
    assert data["layers"] == list(f.layers) and data["layer_labels"] == list(f.layer_labels)
    bare = Finding(f.rule, f.severity, f.layers, f.steps, f.evidence, f.message, f.remedies)
    assert bare == f and bare.shown_layers == f.layers
