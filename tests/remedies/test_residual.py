"""Residual wrapping: x + scale * f(x) around shape-preserving blocks, nothing else changed."""

from __future__ import annotations

import pytest
import torch
from remedies_helpers import make_mlp, same_state, snapshot
from torch import nn

from gradwatch.remedies import Residual, UnsupportedModelError, add_residual


def test_middle_blocks_are_wrapped_and_forward_is_x_plus_f_x() -> None:
    """Linear(d, d)+act blocks become residual; the output equals a hand-written forward."""
    model = make_mlp(depth=5, width=8, d_in=3, d_out=2)
    before = snapshot(model)
    new = add_residual(model, scale=0.5)
    kinds = [type(m).__name__ for m in new]
    assert kinds == ["Linear", "Sigmoid", "Residual", "Residual", "Residual", "Linear"]
    assert same_state(model, before)
    assert sum(p.numel() for p in new.parameters()) == sum(p.numel() for p in model.parameters())
    old = dict(model.named_parameters())
    for name, p in new.named_parameters():
        assert torch.equal(p, old[name.split(".block.")[-1]])  # "2.block.2.weight" was "2.weight"
    x = torch.randn(4, 3)
    h = torch.sigmoid(model[0](x))
    for i in (2, 4, 6):
        h = h + 0.5 * torch.sigmoid(model[i](h))
    torch.testing.assert_close(new(x), model[8](h))


def test_block_size_groups_consecutive_units() -> None:
    """block_size=2 wraps pairs of units; an odd unit left over is wrapped alone."""
    new = add_residual(make_mlp(depth=5, width=8), block_size=2)
    res = [m for m in new if isinstance(m, Residual)]
    assert [len(r.block) for r in res] == [
        4,
        2,
    ]  # Linear, Sigmoid, Linear, Sigmoid | Linear, Sigmoid


def test_same_padded_convs_are_wrapped_strided_are_not() -> None:
    """Conv(c, c, 3, padding=1) is shape-preserving; a stride-2 conv is not."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(),
    )  # fmt: skip
    new = add_residual(model)
    assert [type(m).__name__ for m in new] == ["Conv2d", "ReLU", "Residual", "Conv2d", "ReLU"]
    assert new(torch.randn(1, 3, 8, 8)).shape == model(torch.randn(1, 3, 8, 8)).shape


def test_nested_sequential_blocks() -> None:
    """Sequential(Linear(d, d), act) children of a Sequential are blocks themselves."""
    model = nn.Sequential(
        nn.Linear(2, 6), *[nn.Sequential(nn.Linear(6, 6), nn.Tanh()) for _ in range(3)],
        nn.Linear(6, 1),
    )  # fmt: skip
    new = add_residual(model)
    assert [type(m).__name__ for m in new][1:4] == ["Residual"] * 3


def test_no_shape_preserving_block_raises_clearly() -> None:
    """A pyramid MLP has no Linear(d, d): the error says what a residual needs."""
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 1))
    with pytest.raises(UnsupportedModelError, match=r"no shape-preserving block.*Linear\(d, d\)"):
        add_residual(model)
    with pytest.raises(ValueError, match="block_size"):
        add_residual(make_mlp(), block_size=0)
