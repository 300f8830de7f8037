"""apply: every remedy id dispatches, the user's model is never modified."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from remedies_helpers import make_mlp, remedy_case, same_state, snapshot
from torch import nn

from gradwatch.diagnosis import REMEDY_IDS
from gradwatch.remedies import REMEDIES, GradientClipper, apply, lower_lr, lr_warmup, raise_lr


@pytest.mark.parametrize("remedy", REMEDY_IDS)
def test_every_remedy_id_applies_and_leaves_the_model_untouched(remedy: str) -> None:
    """apply(model, id) works for each id; the input model is bit-identical afterwards."""
    model, opts, x = remedy_case(remedy)
    before = snapshot(model)
    if remedy == "faster_hardware" and not torch.cuda.is_available():
        with pytest.warns(UserWarning, match="no accelerator"):
            out = apply(model, remedy, **opts)
    else:
        out = apply(model, remedy, **opts)
    assert same_state(model, before)
    if remedy.startswith("clip_"):
        assert isinstance(out, GradientClipper)
        return
    if REMEDIES[remedy].returns == "scheduler":
        assert isinstance(out, torch.optim.lr_scheduler.LRScheduler)
        return
    assert isinstance(out, nn.Module) and out is not model
    assert out(x.to(next(out.parameters()).device)).shape == model(x).shape


def test_clip_remedy_attaches_to_a_given_optimizer() -> None:
    """apply(..., 'clip_value', optimizer=opt) returns a clipper already clipping opt's steps."""
    model = make_mlp(width=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    clipper = apply(model, "clip_value", clip_value=1e-4, optimizer=opt)
    assert isinstance(clipper, GradientClipper)
    (model(torch.randn(4, 5)) * 1e3).sum().backward()
    opt.step()
    assert all(float(p.grad.abs().max()) <= 1e-4 for p in model.parameters())  # type: ignore[union-attr]
    assert clipper.stats().steps == 1


def test_unknown_id_and_missing_data_are_clear_errors() -> None:
    """An unknown id lists the known ones; data-needing remedies say which option to pass."""
    with pytest.raises(ValueError, match="unknown remedy id 'dropout'"):
        apply(make_mlp(), "dropout")
    with pytest.raises(ValueError, match="inputs="):
        apply(make_mlp(), "init_lsuv")
    with pytest.raises(ValueError, match="data="):
        apply(make_mlp(), "layerwise_pretraining")
    with pytest.raises(ValueError, match="max_norm"):
        apply(make_mlp(), "clip_norm")


@pytest.mark.parametrize(
    ("remedy", "make", "options"),
    [
        ("lr_warmup", lr_warmup, {"steps": 3}),
        ("lower_lr", lower_lr, {}),
        ("raise_lr", raise_lr, {}),
    ],
)
def test_a_scheduler_remedy_refuses_an_optimizer_of_another_model_or_none(
    remedy: str, make: Callable[..., object], options: dict[str, object]
) -> None:
    """lr_warmup, lower_lr and raise_lr work on the optimizer that trains the model: another model's is
    refused before its rate is touched, a missing one names the option, and the functions
    themselves refuse what is not an optimizer."""
    model = make_mlp()
    other = torch.optim.SGD(make_mlp().parameters(), lr=0.1)
    match = f"{remedy}: `optimizer` updates none of the model's parameters"
    with pytest.raises(ValueError, match=match):
        apply(model, remedy, optimizer=other, **options)
    assert other.param_groups[0]["lr"] == 0.1
    with pytest.raises(ValueError, match="needs the optimizer: pass optimizer="):
        apply(model, remedy, optimizer=None)
    with pytest.raises(TypeError, match="expected `optimizer` to be a torch.optim.Optimizer"):
        make("adam")
