"""A plain SGD step's update ratio, read from the optimizer's terms, equals the applied update."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.recording.sgd_update import sgd_step

# The applied update differs from lr * d by the rounding of each weight's add, at most half
# its last place: a difference of update ratio within float32's resolution.
_ROUNDING = float(np.finfo(np.float32).eps)


class _CopiedSGD(torch.optim.SGD):
    """SGD under another class: the recorder measures its update from a copy of the weights."""


def _model(width: int = 300) -> nn.Sequential:
    # Width 300: each weight is a large tensor (reduced alone), each bias a small one
    # (concatenated with the others on CPU), so both kinds of value are covered.
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, width), nn.Tanh(), nn.Linear(width, width), nn.Linear(width, 2)
    )


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [
        torch.cat([p.detach().double().flatten() for p in m.parameters(recurse=False)])
        for m in model.modules()
        if any(True for _ in m.parameters(recurse=False))
    ]


def _run(
    make_opt: Callable[[nn.Module], torch.optim.Optimizer],
    *,
    steps: int = 4,
    before_step: Callable[[nn.Module], None] | None = None,
    step_begin: str = "optimizer",
) -> tuple[np.ndarray, np.ndarray, gw.Watch]:
    """(recorded update ratios, float64 reference ||after - before|| / ||before||, the watch)."""
    model = _model()
    opt = make_opt(model)
    x, y = torch.randn(16, 8), torch.randn(16, 2)
    expected = []
    with gw.watch(model, opt, sample_every=1, overhead=None, step_begin=step_begin) as w:
        for _ in range(steps):
            opt.zero_grad()
            (model(x) - y).pow(2).mean().backward()
            if step_begin == "caller":
                w.begin_step()
            if before_step is not None:
                before_step(model)
            before = _weights(model)
            opt.step()
            after = _weights(model)
            expected.append(
                [((a - b).norm() / b.norm()).item() for a, b in zip(after, before, strict=True)]
            )
    _, ratio = w.trace.measured("update_ratio")
    return ratio, np.array(expected), w


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
        lambda m: torch.optim.SGD(m.parameters(), lr=0.1, maximize=True),
        lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9),
        lambda m: torch.optim.SGD(
            m.parameters(), lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01
        ),
        lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, foreach=False),
        lambda m: torch.optim.SGD(
            [
                {"params": m[0].parameters(), "lr": 0.2},
                {"params": list(m[2].parameters()) + list(m[3].parameters())},
            ],
            lr=0.01,
        ),
    ],
    ids=["plain", "maximize", "momentum", "momentum-decay-dampening", "for-loop", "two-rates"],
)
def test_sgd_update_ratio_matches_float64_reference(
    make_opt: Callable[[nn.Module], torch.optim.Optimizer],
) -> None:
    """Read from SGD's terms (no copy of the weights), the update ratio is the applied one."""
    ratio, expected, w = _run(make_opt)
    assert w._grads._snapshot.buffers is None  # no copy was taken
    np.testing.assert_allclose(ratio, expected, rtol=2e-4, atol=_ROUNDING)


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True),
        lambda m: torch.optim.SGD(m.parameters(), lr=0.1, weight_decay=0.01),
        lambda m: _CopiedSGD(m.parameters(), lr=0.1),
    ],
    ids=["nesterov", "decay-without-momentum", "subclass"],
)
def test_other_sgd_steps_keep_the_copy_of_the_weights(
    make_opt: Callable[[nn.Module], torch.optim.Optimizer],
) -> None:
    """Where SGD's terms do not give the update, it is measured from a copy, as before."""
    ratio, expected, w = _run(make_opt)
    assert w._grads._snapshot.buffers is not None
    np.testing.assert_allclose(ratio, expected, rtol=2e-4, atol=_ROUNDING)


def test_a_clip_after_the_statistics_were_taken_is_in_the_update() -> None:
    """Under step_begin='caller' the gradients can be clipped after the pre-step statistics;
    the update is then read from the clipped gradients, not from the statistics."""

    def clip(model: nn.Module) -> None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)

    ratio, expected, _ = _run(
        lambda m: torch.optim.SGD(m.parameters(), lr=0.1), before_step=clip, step_begin="caller"
    )
    np.testing.assert_allclose(ratio, expected, rtol=2e-4, atol=_ROUNDING)


def test_a_watched_layer_the_optimizer_does_not_hold_reads_as_under_the_copy() -> None:
    """A layer outside the optimizer's groups has no update ratio (missing, as when the
    update is measured from a copy); the others' are the applied ones."""
    for make in (torch.optim.SGD, _CopiedSGD):
        ratio, expected, _ = _run(
            lambda m, make=make: make(list(m[2].parameters()) + list(m[3].parameters()), lr=0.1)
        )
        assert np.all(np.isnan(ratio[:, 0]))
        np.testing.assert_allclose(ratio[:, 1:], expected[:, 1:], rtol=2e-4, atol=_ROUNDING)


def test_a_layer_without_a_gradient_this_step_reads_as_under_the_copy() -> None:
    """A watched layer whose gradients are None at a step (SGD skips it) has the update ratio
    the copy gives it, and the others theirs."""

    def drop(model: nn.Module) -> None:
        for p in model[0].parameters():
            p.grad = None

    results = []
    for make in (torch.optim.SGD, _CopiedSGD):
        ratio, expected, _ = _run(
            lambda m, make=make: make(m.parameters(), lr=0.1), before_step=drop
        )
        np.testing.assert_allclose(ratio, expected, rtol=2e-4, atol=_ROUNDING)
        results.append(ratio[:, 0])
    np.testing.assert_array_equal(results[0], results[1])


def test_the_formula_is_not_used_where_rounding_can_swallow_an_update() -> None:
    """Half-precision weights, fused or differentiable SGD, a tensor rate on an accelerator
    or groups that differ in momentum keep the copy of the weights."""
    w16 = nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    w32, v32 = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    assert sgd_step(torch.optim.SGD([w16], lr=0.1), [w16]) is None
    assert sgd_step(torch.optim.SGD([w32], lr=0.1, differentiable=True), [w32]) is None
    on_device = torch.optim.SGD([w32], lr=0.1)
    on_device.param_groups[0]["lr"] = torch.tensor(0.1, device="meta")  # (as on a GPU)
    assert sgd_step(on_device, [w32]) is None
    mixed = torch.optim.SGD([{"params": [w32]}, {"params": [v32], "momentum": 0.9}], lr=0.1)
    assert sgd_step(mixed, [w32, v32]) is None
    assert sgd_step(torch.optim.Adam([w32]), [w32]) is None
    kept = sgd_step(torch.optim.SGD([w32], lr=torch.tensor(0.1)), [w32, v32])
    assert kept is not None and kept.lr == pytest.approx((0.1, 0.0))
