"""The 1e-7 gradient floor on a real model: counted under SGD, not under AdamW.

A width-16 BERT classifier (Hugging Face config, random init) starts with near-uniform
attention, so its query and key weights get gradients of RMS ~7e-8, under SageMaker's 1e-7
floor. Under SGD those weights barely move (update ratio ~2e-9): the floor is a real finding.
Under AdamW they move like every other layer (~0.02): the floor is reported, not fired.
"""

from __future__ import annotations

import pytest
import torch

import gradwatch as gw
from gradwatch.diagnosis import Finding

from ._reference import tiny_bert

pytest.importorskip("transformers")

ATTENTION = ("attention.self.query", "attention.self.key")


def _vanishing(optimizer: type[torch.optim.Optimizer]) -> Finding:
    torch.manual_seed(0)
    model = tiny_bert()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 64, (32, 12), generator=g)
    labels = ids[:, 0] % 2
    opt = optimizer(model.parameters(), lr=1e-3)
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for step in range(4):
            batch = torch.arange(8) + 8 * step
            out = model(input_ids=ids[batch], labels=labels[batch])
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            w.log(loss=out.loss)
    (f,) = [f for f in gw.diagnose(w.trace) if f.rule == "vanishing_gradient"]
    return f


def test_floor_layers_that_adamw_moves_are_reported_not_fired() -> None:
    f = _vanishing(torch.optim.AdamW)
    assert "below_floor" not in f.evidence
    moving = f.evidence["below_floor_moving"]
    assert moving and all(name.endswith(ATTENTION) for name in moving)
    for v in moving.values():
        assert v["grad_rms"] < 1e-7 and v["update_ratio"] > 1e-3
    # What is left is the depth trend (3.75 decades at 4 steps): a warning, not critical.
    assert f.severity == "warning"
    assert f.evidence["max_contrast_decades"] < 4


def test_floor_layers_that_sgd_cannot_move_stay_critical() -> None:
    f = _vanishing(torch.optim.SGD)
    assert f.severity == "critical"
    floor = f.evidence["below_floor"]
    assert floor and all(name.endswith(ATTENTION) for name in floor)
    assert "below_floor_moving" not in f.evidence
