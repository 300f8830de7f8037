"""reduce_depth: the middle shape-preserving blocks go, the rest is copied unchanged."""

from __future__ import annotations

import pytest
import torch
from remedies_helpers import make_mlp, same_state, snapshot
from torch import nn

from gradwatch.remedies import UnsupportedModelError, reduce_depth


def test_keeps_first_and_last_blocks_and_drops_the_middle() -> None:
    """Of 6 Linear(d, d) blocks, keep=3 keeps blocks 1, 2 and 6 (the input/output layers stay)."""
    model = make_mlp(depth=8, width=8, d_in=3, d_out=2)  # Linear(3,8), 6 x Linear(8,8), out
    before = snapshot(model)
    new = reduce_depth(model, keep=3)
    linears = [m for m in new if isinstance(m, nn.Linear)]
    old = [m for m in model if isinstance(m, nn.Linear)]
    assert len(linears) == 5
    for got, want in zip(linears, [old[0], old[1], old[2], old[6], old[7]], strict=True):
        assert torch.equal(got.weight, want.weight) and torch.equal(got.bias, want.bias)
    assert same_state(model, before)
    assert new(torch.randn(4, 3)).shape == (4, 2)


def test_default_halves_and_drop_is_the_complement() -> None:
    """Default keeps n // 2 blocks; drop=k keeps n - k."""
    model = make_mlp(depth=8, width=8)
    assert sum(isinstance(m, nn.Linear) for m in reduce_depth(model)) == 2 + 3
    assert sum(isinstance(m, nn.Linear) for m in reduce_depth(model, drop=5)) == 2 + 1


def test_errors_name_the_range_and_the_model() -> None:
    """Out-of-range keep/drop and models without shape-preserving blocks raise clearly."""
    with pytest.raises(ValueError, match=r"keep.*\[0, 5\]"):
        reduce_depth(make_mlp(depth=8, width=8), keep=6)
    with pytest.raises(ValueError, match="not both"):
        reduce_depth(make_mlp(), keep=1, drop=1)
    with pytest.raises(UnsupportedModelError, match="no shape-preserving block"):
        reduce_depth(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)))
