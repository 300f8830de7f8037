"""verify: the same batches and seed with and without a remedy, recorded, compared."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.diagnosis import Finding
from gradwatch.lab.verify import verify
from gradwatch.remedies import init_he_, swap_activations
from gradwatch.trace import Trace


def make_mlp(depth: int = 6, width: int = 16, d_in: int = 5, d_out: int = 3) -> nn.Sequential:
    """``depth`` Linear layers: d_in -> width -> ... -> width -> d_out, sigmoid between."""
    layers: list[nn.Module] = [nn.Linear(d_in, width), nn.Sigmoid()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(width, d_out))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(model: nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    now = model.state_dict()
    return now.keys() == saved.keys() and all(torch.equal(now[k], saved[k]) for k in now)


def _batches(
    n: int = 3, d_in: int = 5, classes: int = 3
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(16, d_in, generator=g), torch.randint(0, classes, (16,), generator=g))
        for _ in range(n)
    ]


def _manual_losses(model: nn.Module, batches: list, steps: int, lr: float) -> list[float]:  # type: ignore[type-arg]
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    out = []
    for i in range(steps):
        x, y = batches[i % len(batches)]
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(float(loss.detach()))
    return out


def _grad_ratio(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """First/last Linear gradient RMS by plain autograd (independent of the recorder)."""
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    lin = [m for m in model.modules() if isinstance(m, nn.Linear)]
    rms = [
        float(torch.cat([p.grad.flatten() for p in m.parameters()]).pow(2).mean().sqrt())
        for m in lin
    ]  # type: ignore[union-attr]
    return rms[0] / rms[-1]


def test_baseline_arm_equals_a_manual_training_loop_and_model_is_untouched() -> None:
    """The baseline's recorded losses equal a hand-written SGD loop; the user's model is unchanged."""
    torch.manual_seed(0)
    model = make_mlp(depth=4, width=8)
    before = snapshot(model)
    batches = _batches()
    v = verify(model, "relu", batches, steps=5, seed=0, diagnose=lambda t: [])
    assert same_state(model, before)
    import copy

    expected = _manual_losses(copy.deepcopy(model), batches, 5, lr=0.01)
    np.testing.assert_allclose(v.before.trace.scalar("loss"), expected, rtol=1e-6)
    relu = swap_activations(model, "relu").model
    np.testing.assert_allclose(
        v.after.trace.scalar("loss"), _manual_losses(relu, batches, 5, lr=0.01), rtol=1e-6
    )
    assert v.before.loss_first == pytest.approx(expected[0])
    assert v.before.loss_last == pytest.approx(expected[-1])


def test_gradient_ratio_matches_plain_autograd() -> None:
    """The step-0 first/last gradient RMS ratio read from the trace equals autograd's."""
    torch.manual_seed(0)
    model = make_mlp(depth=6, width=8)
    batches = _batches()
    v = verify(model, "residual", batches, steps=1, seed=0, diagnose=lambda t: [])
    import copy

    from gradwatch.remedies import add_residual

    assert v.before.grad_ratio_first == pytest.approx(
        _grad_ratio(copy.deepcopy(model), *batches[0]), rel=1e-5
    )
    assert v.after.grad_ratio_first == pytest.approx(
        _grad_ratio(add_residual(model), *batches[0]), rel=1e-5
    )
    assert (v.before.first_layer, v.before.last_layer) == ("0", "10")


def _toy_diagnose(trace: Trace) -> list[Finding]:
    """A stand-in rule: vanishing when the first layer's gradient RMS is < 1e-4 of the last's."""
    rms = trace.matrix("grad_rms")[0]
    if rms[0] / rms[-1] < 1e-4:
        return [Finding("vanishing_gradient", "critical", ("0",), (0, 0), {}, "vanishing")]
    return []


def test_findings_that_disappear_and_appear() -> None:
    """With a diagnose function, the comparison lists the rules that went away."""
    torch.manual_seed(0)
    v = verify(
        make_mlp(depth=10, width=8), "residual", _batches(), steps=1, seed=0, diagnose=_toy_diagnose
    )
    assert v.before.findings == ("vanishing_gradient",)
    assert v.disappeared == ("vanishing_gradient",) and v.appeared == ()
    assert "findings gone: ['vanishing_gradient']" in v.summary()


def test_clip_remedy_is_attached_and_logged() -> None:
    """verify with clip_norm attaches a clipper: the treated trace has clip_coef per step."""
    torch.manual_seed(0)
    v = verify(
        make_mlp(depth=3, width=8), "clip_norm", _batches(), steps=4, seed=0,
        options={"max_norm": 1e-3}, diagnose=lambda t: [],
    )  # fmt: skip
    coef = v.after.trace.scalar("clip_coef")
    assert len(coef) == 4 and np.all(coef < 1.0)
    assert not v.before.trace.has_scalar("clip_coef")


@pytest.mark.parametrize(
    ("remedy", "options", "after"),
    [
        # the warm-up's rate rises over its 4 steps, then stays at the optimizer's
        ("lr_warmup", {"steps": 4}, [0.05, 0.1, 0.15, 0.2, 0.2, 0.2]),
        # the lowered rate is the factor times the baseline's at every step
        ("lower_lr", {"factor": 0.25}, [0.05] * 6),
    ],
)
def test_a_scheduler_remedy_schedules_the_treated_runs_rate(
    remedy: str, options: dict[str, object], after: list[float]
) -> None:
    """verify with lr_warmup or lower_lr makes the scheduler on the treated run's optimizer:
    its recorded rate follows the schedule, the baseline's stays at the optimizer's rate."""
    torch.manual_seed(0)
    v = verify(
        make_mlp(depth=3, width=8), remedy, _batches(), steps=6, seed=0,
        options=options, optimizer=lambda p: torch.optim.SGD(p, lr=0.2),
        diagnose=lambda t: [],
    )  # fmt: skip
    np.testing.assert_allclose(v.after.trace.scalar("optimizer_lr"), after, rtol=1e-6)
    np.testing.assert_allclose(v.before.trace.scalar("optimizer_lr"), [0.2] * 6)


def test_callable_remedy_and_bad_batches() -> None:
    """A function remedy (relu then He) is used as given; malformed batches are refused."""

    def relu_he(m: nn.Module) -> nn.Module:
        return init_he_(swap_activations(m, "relu").model)

    v = verify(
        make_mlp(depth=4, width=8), relu_he, _batches(), steps=1, seed=0, diagnose=lambda t: []
    )
    assert v.remedy == "relu_he"
    with pytest.raises(ValueError, match="batches"):
        verify(make_mlp(), "relu", [torch.randn(4, 5)], steps=1)
    with pytest.raises(ValueError, match="steps"):
        verify(make_mlp(), "relu", _batches(), steps=0)


def test_with_the_real_diagnosis_batchnorm_removes_vanishing_gradient() -> None:
    """On a 10-layer sigmoid MLP on digits, gw.diagnose finds vanishing gradients in the
    baseline and not after inserting BatchNorm (default diagnose = gradwatch.diagnosis)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    g = torch.Generator().manual_seed(0)
    batches = [
        (x[i], y[i]) for i in (torch.randint(0, len(x), (64,), generator=g) for _ in range(20))
    ]
    torch.manual_seed(0)
    model = make_mlp(depth=10, width=64, d_in=64, d_out=10)
    v = verify(
        model, "batchnorm", batches, steps=60, seed=0,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
    )  # fmt: skip
    assert v.before.findings is not None and "vanishing_gradient" in v.before.findings
    assert v.disappeared is not None and "vanishing_gradient" in v.disappeared
    assert v.after.loss_last < v.before.loss_last


def test_prelu_layers_are_not_taken_as_the_first_or_last_layer() -> None:
    """PReLU owns a parameter (a recorded layer) but the ratio still uses Linear layers."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.PReLU(), nn.Linear(8, 3), nn.PReLU())
    v = verify(model, "tanh", _batches(), steps=1, seed=0, options={"include_output": True},
               diagnose=lambda t: [])  # fmt: skip
    assert (v.before.first_layer, v.before.last_layer) == ("0", "2")


def test_a_prescription_can_be_verified_with_its_suggested_options() -> None:
    """verify(model, prescription) uses its id and options (max_norm), and skips placeholders."""
    from gradwatch.remedies import Prescription

    p = Prescription("clip_norm", "spikes", True, None, options={"max_norm": 1e-3})
    v = verify(make_mlp(depth=3, width=8), p, _batches(), steps=2, seed=0, diagnose=lambda t: [])
    assert v.remedy == "clip_norm" and np.all(v.after.trace.scalar("clip_coef") < 1.0)
    lsuv = Prescription("init_lsuv", "scale", True, None, options={"inputs": "<required>"})
    v = verify(make_mlp(depth=3, width=8), lsuv, _batches(), steps=1, seed=0, diagnose=lambda t: [])
    assert v.remedy == "init_lsuv"  # inputs defaulted to the first batch


def test_gw_verify_is_the_lab_verify() -> None:
    """The public ``gw.verify`` is the lab's verify (it trains through the lab's loop)."""
    assert gw.verify is verify
