"""Activation names in theory: every spelling of the one activation table resolves to the
function torch computes for it; names theory has no closed form for are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradwatch import _activations
from gradwatch.theory import ACTIVATIONS, resolve_activation

SPELLINGS = {
    "tanh": "tanh",
    "Tanh": "tanh",
    " ReLU ": "relu",
    "LeakyReLU": "leaky_relu",
    "leaky_relu": "leaky_relu",
    "leakyrelu": "leaky_relu",
    "SiLU": "swish",
    "silu": "swish",
    "swish": "swish",
    "logistic": "sigmoid",
    "Sigmoid": "sigmoid",
    "GELU": "gelu",
    "ELU": "elu",
    "SELU": "selu",
    "identity": "linear",
    "Identity": "linear",
    "none": "linear",
    "linear": "linear",
}


@pytest.mark.parametrize(("spelling", "name"), SPELLINGS.items())
def test_spellings_resolve_to_the_function_torch_computes(spelling: str, name: str) -> None:
    """An id, alias or torch class name gives the closed-form phi of that activation, equal
    to the torch module of the same class on a grid (float64)."""
    act = resolve_activation(spelling)
    assert act.name == name and act.derivative == "closed-form"
    x = np.linspace(-6.0, 6.0, 241)
    module = _activations.module_class(name)()
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(act.phi(x), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["prelu", "PReLU", "softsign", "Softshrink", "relu6"])
def test_names_without_a_closed_form_are_refused_with_the_choices(name: str) -> None:
    """A name theory cannot integrate (even one the activation table knows) is a ValueError
    listing the names it can, and pointing at callables."""
    with pytest.raises(ValueError, match=rf"unknown activation '{name}'; use one of \['sigmoid'"):
        resolve_activation(name)


def test_theory_names_are_ids_of_the_activation_table() -> None:
    """Every activation theory integrates is an id of the one activation table."""
    assert set(ACTIVATIONS) <= set(_activations.CLASS_NAMES)
