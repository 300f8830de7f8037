"""One init-gain table: the poor_initialization rule judges by the gains the remedies use."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradwatch._activations import INIT_GAINS, init_gain
from gradwatch.diagnosis.rules.poor_initialization import _needed_std
from gradwatch.remedies import activation_gain, init_he_
from gradwatch.theory import mean_field
from gradwatch.trace import LayerInfo


def _layer(activation: str, fan_in: int = 256) -> LayerInfo:
    return LayerInfo(
        name="0",
        type="Linear",
        depth=0,
        num_params=fan_in * fan_in,
        shapes={"weight": [fan_in, fan_in]},
        activation=activation,
    )


@pytest.mark.parametrize("cls", sorted(INIT_GAINS))
def test_rule_and_remedy_use_one_gain(cls: str) -> None:
    """For every activation in the table, init_he_ draws weights with the std the rule needs."""
    torch.manual_seed(0)
    width = 256
    model = nn.Sequential(nn.Linear(width, width), getattr(nn, cls)(), nn.Linear(width, 4))
    init_he_(model)
    measured = float(model[0].weight.detach().std()) * math.sqrt(width)  # gain actually drawn
    needed = _needed_std(_layer(cls, width))
    assert needed is not None
    assert needed[0] * math.sqrt(width) == pytest.approx(INIT_GAINS[cls])
    assert activation_gain(getattr(nn, cls)()) == pytest.approx(INIT_GAINS[cls])
    # 65,536 draws: the sample std is within 1% of the true one with overwhelming probability.
    assert measured == pytest.approx(needed[0] * math.sqrt(width), rel=0.01)


def test_string_nonlinearities_match_the_table() -> None:
    """activation_gain's torch nonlinearity names read the same table (and reject others)."""
    for name in ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu"):
        assert activation_gain(name) == init_gain(name)
    # torch's own calculate_gain for the entries where gradwatch agrees with it
    for name in ("sigmoid", "tanh", "relu", "leaky_relu"):
        assert activation_gain(name) == pytest.approx(nn.init.calculate_gain(name))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown nonlinearity 'gelu'"):
        activation_gain("gelu")


def test_selu_gain_keeps_the_self_normalising_fixed_point() -> None:
    """SELU's table gain 1 keeps unit variance through depth (Klambauer et al.); torch's 3/4
    does not: checked by mean-field theory and by a 30-layer random net."""
    assert init_gain("SELU") == 1.0
    assert mean_field("selu", 1.0, 0.0).q_star == pytest.approx(1.0, abs=1e-6)
    assert mean_field("selu", 0.75, 0.0).q_star < 0.05
    torch.manual_seed(0)
    width, depth = 512, 30
    x = torch.randn(256, width)
    for gain, lo, hi in ((1.0, 0.8, 1.2), (0.75, 0.0, 0.5)):
        h = x
        for _ in range(depth):
            h = torch.selu(h @ (torch.randn(width, width) * gain / math.sqrt(width)).T)
        assert lo <= float(h.std()) <= hi, (gain, float(h.std()))


def test_init_gain_spellings() -> None:
    """Class names, ids and 'linear' resolve; activations without an entry give None."""
    assert init_gain("LeakyReLU") == init_gain("leaky_relu") == pytest.approx(math.sqrt(2 / 1.0001))
    assert init_gain("linear") == init_gain("Identity") == 1.0
    assert init_gain("GELU") is None
