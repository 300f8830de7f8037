"""Norm insertion: where the norms go, what they add, and what stays untouched."""

from __future__ import annotations

import pytest
import torch
from remedies_helpers import make_mlp, same_state, snapshot
from torch import nn

from gradwatch.remedies import UnsupportedModelError, insert_batchnorm, insert_layernorm


def _types(seq: nn.Sequential) -> list[str]:
    return [type(m).__name__ for m in seq]


def test_batchnorm_goes_between_each_hidden_linear_and_its_activation() -> None:
    """Linear -> BatchNorm1d -> Sigmoid for hidden layers; the output Linear gets none."""
    model = make_mlp(depth=3, width=8, d_in=4, d_out=2)
    before = snapshot(model)
    new = insert_batchnorm(model)
    assert _types(new) == [
        "Linear", "BatchNorm1d", "Sigmoid", "Linear", "BatchNorm1d", "Sigmoid", "Linear",
    ]  # fmt: skip
    assert same_state(model, before)
    n_old = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in new.parameters()) == n_old + 2 * (8 + 8)
    for old_i, new_i in ((0, 0), (2, 3), (4, 6)):
        assert torch.equal(new[new_i].weight, model[old_i].weight)
    x = torch.randn(6, 4)
    assert new(x).shape == model(x).shape


def test_layernorm_normalises_each_sample() -> None:
    """With LayerNorm after the first Linear, its output per sample has mean 0, var 1."""
    new = insert_layernorm(make_mlp(depth=3, width=8, d_in=4))
    assert isinstance(new[1], nn.LayerNorm)
    h = new[1](new[0](torch.randn(5, 4) * 10))
    torch.testing.assert_close(h.mean(dim=1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(h.var(dim=1, unbiased=False), torch.ones(5), atol=1e-3, rtol=0)


def test_nested_sequentials_and_convolutions() -> None:
    """Conv2d gets BatchNorm2d (GroupNorm(1, C) for layernorm); nested Sequentials are visited."""
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU()),
        nn.Flatten(),
        nn.Linear(6 * 5 * 5, 2),
    )
    new = insert_batchnorm(model)
    assert _types(new[0]) == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert _types(new[1]) == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert new(torch.randn(2, 3, 5, 5)).shape == (2, 2)
    ln = insert_layernorm(model)
    assert isinstance(ln[0][1], nn.GroupNorm) and ln[0][1].num_groups == 1


def test_existing_norm_is_not_doubled() -> None:
    """A Linear already followed by a norm gets no second one."""
    model = nn.Sequential(
        nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1)
    )
    assert _types(insert_batchnorm(model)) == [
        "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear",
    ]  # fmt: skip


class _Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def test_unsupported_model_names_what_it_found() -> None:
    """No Linear+activation in a Sequential: the error lists the modules and what is supported."""
    with pytest.raises(UnsupportedModelError, match=r"modules: Linear.*Supported: nn\.Linear"):
        insert_batchnorm(_Custom())
    with pytest.raises(ValueError, match="kind"):
        from gradwatch.remedies import insert_norm

        insert_norm(make_mlp(), "groupnorm")  # type: ignore[arg-type]
