"""Where the user clips with clip_grad_norm_, the recorded gradient statistics are pre-clip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.remedies import GradientClipper

ORIGINAL = torch.nn.utils.clip_grad_norm_


def _model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))


def _linears(model: nn.Sequential) -> list[nn.Module]:
    return [model[0], model[2]]


def _norms(layer: nn.Module) -> tuple[float, float, float]:
    """float64 norm, RMS and max |g| of a layer's gradients."""
    g = torch.cat([p.grad.double().flatten() for p in layer.parameters()])
    return g.norm().item(), g.norm().item() / math.sqrt(g.numel()), g.abs().max().item()


@pytest.mark.parametrize("lookup", ["utils", "clip_grad", "generator"])
def test_statistics_are_those_before_clip_grad_norm(lookup: str) -> None:
    """grad_norm, grad_rms, grad_max and global_grad_norm equal float64 norms taken before
    clip_grad_norm_ at the same step; global_grad_norm_clipped and clip_coef what it did."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    clip = {
        "utils": lambda: torch.nn.utils.clip_grad_norm_(list(model.parameters()), 0.5),
        "clip_grad": lambda: torch.nn.utils.clip_grad.clip_grad_norm_(model.parameters(), 0.5),
        "generator": lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.5),
    }[lookup]
    pre, pre_global, post_global, coefs = [], [], [], []
    gen = torch.Generator().manual_seed(1)
    with gw.watch(model, opt, sample_every=1) as w:
        for step in range(5):
            x = torch.randn(8, 4, generator=gen) * (10.0 if step == 2 else 0.3)
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            pre.append([_norms(m) for m in _linears(model)])
            total = math.sqrt(sum(n**2 for n, _, _ in pre[-1]))
            pre_global.append(total)
            coefs.append(min(1.0, 0.5 / (total + 1e-6)))
            clip()
            post_global.append(math.sqrt(sum(_norms(m)[0] ** 2 for m in _linears(model))))
            opt.step()
    t = w.trace
    expected = np.array(pre)  # (steps, layers, 3)
    np.testing.assert_allclose(t.matrix("grad_norm"), expected[:, :, 0], rtol=1e-5)
    np.testing.assert_allclose(t.matrix("grad_rms"), expected[:, :, 1], rtol=1e-5)
    np.testing.assert_allclose(t.matrix("grad_max"), expected[:, :, 2], rtol=1e-5)
    np.testing.assert_allclose(t.scalar("global_grad_norm"), pre_global, rtol=1e-5)
    np.testing.assert_allclose(t.scalar("global_grad_norm_clipped"), post_global, rtol=1e-5)
    np.testing.assert_allclose(t.scalar("clip_coef"), coefs, rtol=1e-5)
    assert min(coefs) < 0.5 and max(coefs) == 1.0  # some steps clipped, some not


def test_clipping_part_of_the_model_unclips_only_that_part() -> None:
    """Clipping only the first layer divides only its statistics by the coefficient."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt) as w:
        model(torch.randn(8, 4) * 5).pow(2).mean().backward()
        pre = [_norms(m)[0] for m in _linears(model)]
        torch.nn.utils.clip_grad_norm_(model[0].parameters(), 1e-3)
        opt.step()
    np.testing.assert_allclose(w.trace.matrix("grad_norm")[0], pre, rtol=1e-5)
    assert w.trace.scalar("clip_coef")[0] == pytest.approx(1e-3 / pre[0], rel=1e-4)


def test_an_observed_clip_of_stale_gradients_is_not_applied() -> None:
    """A clip before zero_grad and a fresh backward does not touch the next step's numbers."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt) as w:
        model(torch.randn(8, 4)).pow(2).mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-4)
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        expected = [_norms(m)[0] for m in _linears(model)]
        opt.step()
    np.testing.assert_allclose(w.trace.matrix("grad_norm")[0], expected, rtol=1e-5)
    assert not w.trace.has_scalar("clip_coef")


def test_clip_grad_norm_is_restored_on_close_exception_and_nested_watches() -> None:
    """The wrapper is installed while any watch is open and removed after the last one, also
    when the block raises; an inner watch closing leaves the outer one observing."""
    outer_model, inner_model = _model(), _model()
    outer_opt = torch.optim.SGD(outer_model.parameters(), lr=0.1)
    with gw.watch(outer_model, outer_opt) as outer:
        assert torch.nn.utils.clip_grad_norm_ is not ORIGINAL
        with pytest.raises(RuntimeError, match="boom"), gw.watch(inner_model):
            raise RuntimeError("boom")
        assert torch.nn.utils.clip_grad_norm_ is not ORIGINAL
        outer_model(torch.randn(8, 4) * 5).pow(2).mean().backward()
        total = torch.nn.utils.clip_grad_norm_(outer_model.parameters(), 1e-3)
        outer_opt.step()
    assert torch.nn.utils.clip_grad_norm_ is ORIGINAL
    assert torch.nn.utils.clip_grad.clip_grad_norm_ is ORIGINAL
    assert outer.trace.scalar("global_grad_norm")[0] == pytest.approx(float(total), rel=1e-5)


def test_gradwatch_clipper_and_clip_grad_norm_record_the_same_quantities() -> None:
    """With GradientClipper attached after the watch, the watch reads pre-clip gradients and
    the clipper logs the same clip_coef the user's clip_grad_norm_ path records."""
    results = {}
    for path in ("user", "clipper"):
        torch.manual_seed(0)
        model = _model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(8, 4) * 5
        with gw.watch(model, opt) as w:
            clipper = (
                GradientClipper(model, max_norm=0.5, watch=w).attach(opt)
                if path == "clipper"
                else None
            )
            for _ in range(3):
                opt.zero_grad()
                model(x).pow(2).mean().backward()
                if clipper is None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
                opt.step()
            if clipper is not None:
                clipper.remove()
        results[path] = w.trace
    user, clip = results["user"], results["clipper"]
    np.testing.assert_allclose(user.matrix("grad_norm"), clip.matrix("grad_norm"), rtol=1e-5)
    np.testing.assert_allclose(
        user.scalar("global_grad_norm"), clip.scalar("global_grad_norm"), rtol=1e-5
    )
    np.testing.assert_allclose(user.scalar("clip_coef"), clip.scalar("clip_coef"), rtol=1e-5)


def test_another_clipper_reports_its_clip_through_observe_clip() -> None:
    """gradwatch's own clip_grad_norm_ (not torch's) reported with w.observe_clip gives the
    same pre-clip statistics as torch's observed one."""
    from gradwatch.remedies import clip_grad_norm_

    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt) as w:
        model(torch.randn(8, 4) * 5).pow(2).mean().backward()
        pre = [_norms(m)[0] for m in _linears(model)]
        res = clip_grad_norm_(list(model.parameters()), 0.01)
        w.observe_clip(model.parameters(), res.total_norm, 0.01)
        opt.step()
    np.testing.assert_allclose(w.trace.matrix("grad_norm")[0], pre, rtol=1e-5)
    assert w.trace.scalar("global_grad_norm_clipped")[0] == pytest.approx(0.01, rel=1e-4)


def test_watching_changes_neither_the_clipped_gradients_nor_the_returned_norm() -> None:
    """The wrapped clip_grad_norm_ returns the same norm and leaves the same gradients as
    torch's own, watched or not."""
    results = []
    for watched in (False, True):
        torch.manual_seed(0)
        model = _model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        w = gw.watch(model, opt) if watched else None
        model(torch.randn(8, 4) * 5).pow(2).mean().backward()
        total = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        results.append((total.clone(), [p.grad.clone() for p in model.parameters()]))
        opt.step()
        if w is not None:
            w.close()
    (t0, g0), (t1, g1) = results
    assert torch.equal(t0, t1)
    assert all(torch.equal(a, b) for a, b in zip(g0, g1, strict=True))
