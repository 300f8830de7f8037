"""Activation swaps: module replacement, functional detection, and what is reported."""

from __future__ import annotations

import pytest
import torch
from remedies_helpers import make_mlp, same_state, snapshot
from torch import nn

from gradwatch.diagnosis import ACTIVATION_REMEDY_IDS
from gradwatch.remedies import (
    ACTIVATION_NAMES,
    UnsupportedModelError,
    apply,
    make_activation,
    swap_activations,
)
from gradwatch.remedies._common import activation_types

EXPECTED = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
}


@pytest.mark.parametrize("to", [n for n in ACTIVATION_NAMES if n != "tanh"])
def test_every_hidden_activation_is_swapped_and_weights_kept(to: str) -> None:
    """Each hidden Tanh becomes the requested module; Linear weights and shapes are kept."""
    model = make_mlp(depth=4, act=nn.Tanh)
    before = snapshot(model)
    res = swap_activations(model, to)
    acts = [m for m in res.model if not isinstance(m, nn.Linear)]
    assert all(type(m) is EXPECTED[to] for m in acts) and len(acts) == 3
    assert [n for n, _ in res.swapped] == ["1", "3", "5"]
    assert same_state(model, before)  # the user's model is untouched
    assert all(isinstance(m, nn.Tanh) for m in model if not isinstance(m, nn.Linear))
    for i in (0, 2, 4, 6):
        assert torch.equal(res.model[i].weight, model[i].weight)
    x = torch.randn(7, 5)
    assert res.model(x).shape == model(x).shape


def test_prelu_adds_one_parameter_per_swap() -> None:
    """PReLU owns a slope: the parameter count grows by one per swapped module."""
    model = make_mlp(depth=4)
    n_before = sum(p.numel() for p in model.parameters())
    res = swap_activations(model, "prelu")
    assert sum(p.numel() for p in res.model.parameters()) == n_before + 3


def test_output_activation_is_kept_unless_asked() -> None:
    """A Sigmoid after the last Linear (probabilities) is reported and left alone."""
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1), nn.Sigmoid())
    res = swap_activations(model, "relu")
    assert isinstance(res.model[3], nn.Sigmoid)
    assert res.kept == [("3", "Sigmoid", "output activation; pass include_output=True to swap")]
    assert isinstance(swap_activations(model, "relu", include_output=True).model[3], nn.ReLU)


def test_options_reach_the_new_module() -> None:
    """Constructor options (negative_slope) are passed to every new module."""
    res = swap_activations(make_mlp(depth=3), "leaky_relu", negative_slope=0.2)
    assert res.model[1].negative_slope == 0.2


class _Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.sigmoid(self.a(x)).tanh())


def test_functional_only_model_raises_and_names_the_calls() -> None:
    """Functional activations cannot be module-swapped: the error names them and the fix."""
    with pytest.raises(
        UnsupportedModelError, match=r"torch\.sigmoid.*Tensor\.tanh.*rewrite_functional"
    ):
        swap_activations(_Functional(), "relu")


def test_rewrite_functional_matches_a_hand_written_forward() -> None:
    """With rewrite_functional=True both calls become relu; output equals relu(relu(a(x)))."""
    model = _Functional()
    res = swap_activations(model, "relu", rewrite_functional=True)
    assert len(res.rewritten) == 2 and not res.unchanged_functional
    x = torch.randn(5, 4)
    expected = model.b(torch.relu(torch.relu(model.a(x))))
    torch.testing.assert_close(res.model(x), expected)
    torch.testing.assert_close(model(x), model.b(torch.sigmoid(model.a(x)).tanh()))


class _Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.act, self.b = nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.act(self.a(x))))


def test_mixed_model_reports_what_was_not_changed() -> None:
    """Modules are swapped, the functional tanh is listed as unchanged, apply warns."""
    res = swap_activations(_Mixed(), "relu")
    assert res.swapped == [("act", "Sigmoid")]
    assert res.unchanged_functional == ["torch.tanh (node tanh)"]
    assert "NOT changed" in res.summary()
    with pytest.warns(UserWarning, match=r"torch\.tanh"):
        apply(_Mixed(), "relu")


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.act, self.b = nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.a(x))
        if h.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
            h = h * 2
        return self.b(h)


def test_untraceable_model_is_swapped_and_says_functional_calls_were_not_checked() -> None:
    """When fx fails, modules are still swapped and the report says what was not checked."""
    res = swap_activations(_Untraceable(), "gelu")
    assert res.swapped == [("act", "Sigmoid")]
    assert res.trace_error is not None
    assert "not checked" in res.summary()


def test_already_target_raises() -> None:
    """Swapping to the activation the model already uses changes nothing: a clear error."""
    with pytest.raises(UnsupportedModelError, match="already relu"):
        swap_activations(make_mlp(depth=3, act=nn.ReLU), "relu")


def test_unknown_activation_names_the_choices() -> None:
    """An unknown name is a ValueError listing the supported ones."""
    with pytest.raises(ValueError, match="expected one of"):
        swap_activations(make_mlp(), "softmax")
    with pytest.raises(TypeError, match="bad options"):
        make_activation("relu", negative_slope=0.1)


def test_failed_rewrite_leaves_the_users_model_as_it_was() -> None:
    """Rewriting functional calls to prelu (no functional form) raises; the model is intact."""
    model = _Mixed()
    before = snapshot(model)
    with pytest.raises(UnsupportedModelError, match="PReLU"):
        swap_activations(model, "prelu", rewrite_functional=True)
    assert same_state(model, before) and isinstance(model.act, nn.Sigmoid)


def test_swap_targets_are_the_remedy_ids_and_their_torch_classes() -> None:
    """The swappable names are exactly the activation remedy ids, each making its torch class;
    aliases of the activation table ("silu", "identity") are not swap targets."""
    assert set(ACTIVATION_NAMES) == set(EXPECTED) == set(ACTIVATION_REMEDY_IDS)
    for name, cls in EXPECTED.items():
        assert type(make_activation(name)) is cls
    for alias in ("silu", "identity", "linear", "SiLU"):
        with pytest.raises(ValueError, match="expected one of"):
            make_activation(alias)


def test_recognised_activation_modules_are_the_elementwise_ones_without_shrinkage() -> None:
    """The remedies act on these 20 activation classes (Softshrink/Hardshrink are left alone)."""
    names = {t.__name__ for t in activation_types()}
    assert names == {
        *("Sigmoid", "Tanh", "ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "CELU"),
        *("SELU", "SiLU", "GELU", "Mish", "Hardtanh", "Hardsigmoid", "Hardswish", "Softplus"),
        *("Softsign", "LogSigmoid", "Tanhshrink"),
    }
    model = nn.Sequential(
        nn.Linear(3, 3), nn.Softshrink(), nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1)
    )
    swapped = swap_activations(model, "relu").model
    assert isinstance(swapped[1], nn.Softshrink) and isinstance(swapped[3], nn.ReLU)
