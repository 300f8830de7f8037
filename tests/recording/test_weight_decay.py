"""Each layer's weight decay per unit of learning rate, read from the optimizer's groups, and
a real run whose weights weight decay alone shrank (checked against the decay's own
arithmetic) told apart from one whose updates did."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradwatch as gw
from gradwatch.recording.layers import LayerSet, find_layers
from gradwatch.recording.weight_decay import decay_rates


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4), nn.LayerNorm(4))


def _rates(make: object) -> dict[str, object]:
    model = _mlp()
    assert callable(make)
    return decay_rates(make(model), LayerSet(find_layers(model)[0]))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.1),
            {"form": "decoupled", "per_lr": {"0": 0.1, "2": 0.1, "3": 0.1}},
        ),
        (  # norms and biases left out of the decay, as HF's Trainer does
            lambda m: torch.optim.AdamW(
                [
                    {"params": [m[0].weight, m[2].weight], "weight_decay": 0.1},
                    {"params": [m[0].bias, m[2].bias, *m[3].parameters()], "weight_decay": 0.0},
                ],
                lr=1e-3,
            ),
            {"form": "decoupled", "per_lr": {"0": 0.1, "2": 0.1}},
        ),
        (  # a group at half the rate decays half as much per unit of the recorded (top) rate
            lambda m: torch.optim.AdamW(
                [
                    {"params": m[0].parameters(), "lr": 5e-4},
                    {"params": [*m[2].parameters(), *m[3].parameters()]},
                ],
                lr=1e-3,
                weight_decay=0.1,
            ),
            {"form": "decoupled", "per_lr": {"0": 0.05, "2": 0.1, "3": 0.1}},
        ),
        (  # SGD's L2 term, carried by momentum 0.9: ten times the shrink a step
            lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4),
            {"form": "sgd_l2", "per_lr": {"0": 0.005, "2": 0.005, "3": 0.005}},
        ),
        (
            lambda m: torch.optim.Adam(m.parameters(), weight_decay=0.1, decoupled_weight_decay=True),
            {"form": "decoupled", "per_lr": {"0": 0.1, "2": 0.1, "3": 0.1}},
        ),
        (  # Adam's L2 term is divided by its running gradient scale: no rate known
            lambda m: torch.optim.Adam(m.parameters(), weight_decay=0.1),
            {"form": None, "per_lr": {}},
        ),
        (lambda m: torch.optim.AdamW(m.parameters(), weight_decay=0.0), {"form": "decoupled", "per_lr": {}}),
    ],
    ids=["adamw", "adamw_no_decay_groups", "adamw_layerwise_rates", "sgd_momentum",
         "adam_decoupled", "adam_l2", "adamw_zero"],
)  # fmt: skip
def test_each_layer_s_decay_per_unit_of_learning_rate(
    make: object, expected: dict[str, object]
) -> None:
    got = _rates(make)
    assert got["form"] == expected["form"]
    assert got["per_lr"] == pytest.approx(expected["per_lr"])


@pytest.mark.parametrize(("decay", "lr", "by_decay"), [(20.0, 1e-3, True), (0.0, 0.3, False)])
def test_a_real_run_says_whether_weight_decay_alone_shrank_the_weights(
    decay: float, lr: float, by_decay: bool
) -> None:
    """AdamW with weight decay 20 on a model that cannot learn (random labels): the decay
    takes the weights down, and decay alone predicts their shrink (exp(-sum(lr) x 20),
    recomputed here from the recorded rate); the rule says so. An L2 penalty written into
    the loss, with the optimizer's decay at 0, shrinks them too: decay alone is 1 there, and
    the rule says the updates took them down."""
    model = _mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=decay)
    gen = torch.Generator().manual_seed(0)
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(300):
            x, y = torch.randn(32, 8, generator=gen), torch.randint(0, 4, (32,), generator=gen)
            loss = F.cross_entropy(model(x), y)
            penalty = 0.0 if decay else 5.0 * sum(p.square().sum() for p in model.parameters())
            opt.zero_grad()
            (loss + penalty).backward()
            opt.step()
            w.log(loss=loss)
    trace = w.trace
    assert trace.meta["config"]["weight_decay"]["form"] == "decoupled"
    (f,) = [f for f in gw.diagnose(trace) if f.rule == "collapsing_weights"]
    alone = f.evidence["decay_alone"][f.layers[0]]
    if by_decay:
        # Independent reference: 1e-3 x 20 a step from the first span's middle to the last's,
        # about 270 of the 300 steps (the rule reads them off its sampled rows).
        assert alone == pytest.approx(math.exp(-1e-3 * 20 * 270), rel=0.05)
        assert f.evidence["final_over_initial"][f.layers[0]] < 0.5
        assert "the optimizer's weight decay alone:" in f.message
    else:
        assert alone == 1.0 and "the optimizer does not decay them" in f.message


def test_an_odd_group_setting_reads_as_no_decay() -> None:
    """A group edited by hand after construction (a string, None, a NaN) stops no flush: it
    reads as no decay for its layers."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-4)
    for odd in ("odd", None, float("nan")):
        opt.param_groups[0]["weight_decay"] = odd
        assert decay_rates(opt, LayerSet(find_layers(model)[0]))["per_lr"] == {}
