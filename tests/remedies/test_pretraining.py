"""Greedy layer-wise pretraining: each hidden layer learns to reconstruct its input."""

from __future__ import annotations

import pytest
import torch
from remedies_helpers import make_mlp, same_state, snapshot
from torch import nn

from gradwatch.remedies import UnsupportedModelError, pretrain_layerwise


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 10, generator=g)  # inputs on a 3-dim subspace: learnable codes
    return [(torch.randn(32, 3, generator=g) @ basis, torch.zeros(32)) for _ in range(4)]


def test_hidden_layers_are_pretrained_and_the_output_layer_is_not() -> None:
    """Reconstruction loss falls for every hidden layer; the output layer keeps its weights."""
    torch.manual_seed(0)
    model = make_mlp(depth=4, width=12, d_in=10, d_out=2)
    before = snapshot(model)
    res = pretrain_layerwise(model, _data(), epochs=30, lr=1e-2)
    assert res.layers == ["0", "2", "4"]
    for losses in res.losses:
        assert len(losses) == 30 and losses[-1] < 0.5 * losses[0]
    assert same_state(model, before)
    for i in (0, 2, 4):
        assert not torch.equal(res.model[i].weight, model[i].weight)
    assert torch.equal(res.model[6].weight, model[6].weight)
    assert res.model.training == model.training


def test_reconstruction_is_measured_on_the_frozen_output_of_the_layers_below() -> None:
    """Layer 2's first-epoch loss is the MSE of reconstructing layer 0's (pretrained) output."""
    torch.manual_seed(1)
    model = make_mlp(depth=3, width=6, d_in=10, d_out=2)
    res = pretrain_layerwise(model, _data(), epochs=1, lr=1e-9)  # lr ~ 0: weights stay put
    # with lr ~ 0 the loss is that of the initial encoder/decoder on sigmoid(layer0(x)):
    # it must be small-scale (sigmoid outputs lie in (0, 1)), unlike layer 0's on raw inputs
    assert res.losses[1][0] < 1.0 < res.losses[0][0]


def test_needs_a_sequential_mlp() -> None:
    """Non-Sequential models and stacks with one Linear are refused with a clear message."""

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_mlp()

    with pytest.raises(UnsupportedModelError, match=r"nn\.Sequential.*model\.net"):
        pretrain_layerwise(Wrapper(), _data())
    with pytest.raises(UnsupportedModelError, match="at least two nn.Linear"):
        pretrain_layerwise(nn.Sequential(nn.Linear(10, 2)), _data())
    with pytest.raises(ValueError, match="epochs"):
        pretrain_layerwise(make_mlp(d_in=10), _data(), epochs=0)


def test_one_shot_iterator_feeds_every_layer() -> None:
    """A generator of batches is kept, so the second layer still sees data."""
    res = pretrain_layerwise(make_mlp(depth=3, width=6, d_in=10), iter(_data()), epochs=2)
    assert [len(losses) for losses in res.losses] == [2, 2]


def test_pretraining_accepts_sequential_subclasses() -> None:
    """A subclass of nn.Sequential with its own constructor is pretrained like a plain one."""
    import torch
    from torch import nn

    from gradwatch.remedies import pretrain_layerwise

    class Stack(nn.Sequential):
        def __init__(self, width: int) -> None:
            super().__init__(
                nn.Linear(4, width),
                nn.Sigmoid(),
                nn.Linear(width, width),
                nn.Sigmoid(),
                nn.Linear(width, 2),
            )

    torch.manual_seed(0)
    model = Stack(8)
    before = model[0].weight.detach().clone()
    res = pretrain_layerwise(model, [torch.randn(16, 4)], epochs=2)
    assert isinstance(res.model, Stack)
    assert res.layers == ["0", "2"]
    assert not torch.equal(res.model[0].weight, before)
    assert torch.equal(model[0].weight, before)  # the user's model is untouched
