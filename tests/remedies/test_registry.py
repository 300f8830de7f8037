"""The remedy registry: one entry per remedy id, whose declared options, needs and return kind
are what apply really does."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from remedies_helpers import make_mlp, remedy_case, same_state
from torch import nn

from gradwatch.diagnosis import REMEDY_IDS
from gradwatch.remedies import REMEDIES, REQUIRED, GradientClipper, apply


@contextmanager
def _quiet() -> Iterator[None]:
    """faster_hardware warns on a CPU-only machine (test_apply checks that warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def test_the_registry_lists_every_remedy_id_in_order() -> None:
    """REMEDIES has one Remedy per REMEDY_IDS entry, in that order, each with a description."""
    assert tuple(REMEDIES) == REMEDY_IDS
    for rid, remedy in REMEDIES.items():
        assert remedy.id == rid
        assert remedy.description and "\n" not in remedy.description
        assert remedy.returns in ("model", "clipper", "scheduler")


def test_declared_defaults_match_the_documented_ones() -> None:
    """A few options, written out by hand from the remedies' docs, are what the registry says."""
    assert dict(REMEDIES["residual"].options) == {"scale": 1.0, "block_size": 1}
    assert dict(REMEDIES["init_lsuv"].options) == {"inputs": REQUIRED, "tol": 0.1, "max_iter": 10}
    assert dict(REMEDIES["layerwise_pretraining"].options) == {
        "data": REQUIRED,
        "epochs": 5,
        "lr": 1e-3,
        "noise_std": 0.0,
    }
    assert REMEDIES["clip_norm"].options["max_norm"] == REQUIRED
    assert REMEDIES["clip_norm"].options["optimizer"] is None
    assert REMEDIES["clip_adaptive"].options["clip_factor"] == 0.01
    assert REMEDIES["faster_hardware"].options == {"device": None}
    assert dict(REMEDIES["lower_lr"].options) == {"optimizer": REQUIRED, "factor": 0.1}
    assert dict(REMEDIES["raise_lr"].options) == {"optimizer": REQUIRED, "factor": 10.0}
    assert dict(REMEDIES["relu"].options) == {"include_output": False, "rewrite_functional": False}
    required = {rid: r.required for rid, r in REMEDIES.items() if r.required}
    assert required == {
        "layerwise_pretraining": ("data",),
        "init_lsuv": ("inputs",),
        "clip_norm": ("max_norm",),
        "clip_value": ("clip_value",),
        "lr_warmup": ("optimizer",),
        "lower_lr": ("optimizer",),
        "raise_lr": ("optimizer",),
    }


def _explicit(remedy: str, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` plus every other option of the registry at its declared default."""
    declared = {k: v for k, v in REMEDIES[remedy].options.items() if v != REQUIRED}
    return {**declared, **given}


def _clipped(
    clipper: GradientClipper, model: nn.Module, grads: list[torch.Tensor]
) -> list[torch.Tensor]:
    """The gradients ``grads`` after one clip by ``clipper`` (set on ``model`` first)."""
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad = g.clone()
    clipper.clip_()
    return [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]


def _rates(remedy: str, *, spell: bool, steps: int = 5) -> list[float]:
    """The first group's learning rate over ``steps`` steps under the scheduler remedy, made on
    a fresh optimizer (a second scheduler on one optimizer would compound with the first)."""
    model, opts, _ = remedy_case(remedy)
    scheduler = apply(model, remedy, **(_explicit(remedy, opts) if spell else opts))
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
    opt = opts["optimizer"]
    assert isinstance(opt, torch.optim.Optimizer)
    rates = []
    for _ in range(steps):
        rates.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("remedy", REMEDY_IDS)
def test_passing_the_declared_defaults_changes_nothing(remedy: str) -> None:
    """apply with every declared default spelled out gives exactly what apply without them
    gives (same seed): the registry's defaults are the ones the remedies really use."""
    if REMEDIES[remedy].returns == "scheduler":
        plain_rates, spelled_rates = _rates(remedy, spell=False), _rates(remedy, spell=True)
        # (and the scheduler acted: the optimizer's own rate is 1e-3)
        assert plain_rates == spelled_rates and any(r != 1e-3 for r in plain_rates)
        return
    model, opts, x = remedy_case(remedy)
    with _quiet():
        torch.manual_seed(0)
        plain = apply(model, remedy, **opts)
        torch.manual_seed(0)
        spelled = apply(model, remedy, **_explicit(remedy, opts))
    if REMEDIES[remedy].returns == "clipper":
        assert isinstance(plain, GradientClipper) and isinstance(spelled, GradientClipper)
        (model(x) * 1e3).sum().backward()  # large gradients: every clipper clips
        grads = [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]
        got, want = _clipped(spelled, model, grads), _clipped(plain, model, grads)
        assert any(not torch.equal(g, w) for g, w in zip(got, grads, strict=True))
        assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
        return
    assert isinstance(plain, nn.Module) and isinstance(spelled, nn.Module)
    assert type(plain) is type(spelled)
    assert same_state(spelled, {k: v.detach() for k, v in plain.state_dict().items()})
    device = next(plain.parameters()).device
    assert torch.equal(plain(x.to(device)), spelled(x.to(device)))


@pytest.mark.parametrize("remedy", REMEDY_IDS)
def test_returns_says_what_apply_gives_back(remedy: str) -> None:
    """A remedy declared to return a clipper gives a GradientClipper, a scheduler an
    LRScheduler; the others a new model."""
    model, opts, _ = remedy_case(remedy)
    with _quiet():
        out = apply(model, remedy, **opts)
    expected = {
        "clipper": GradientClipper,
        "scheduler": torch.optim.lr_scheduler.LRScheduler,
        "model": nn.Module,
    }[REMEDIES[remedy].returns]
    assert isinstance(out, expected)
    assert out is not model


@pytest.mark.parametrize("remedy", [r for r in REMEDY_IDS if REMEDIES[r].needs])
def test_a_missing_need_is_named_with_what_to_pass(remedy: str) -> None:
    """apply without a needed batch (or optimizer) raises the need's message: what it is,
    the option, what to pass, an example."""
    (need,) = REMEDIES[remedy].needs
    assert REMEDIES[remedy].options[need.option] == REQUIRED
    with pytest.raises(
        ValueError,
        match=rf"needs {re.escape(need.kind)}: pass {need.option}=<{re.escape(need.what)}>, "
        r"e\.g\. apply",
    ):
        apply(make_mlp(), remedy)
