"""gw.watch takes wrapped optimizers (accelerate, Lightning, any `.optimizer` chain), refuses
what it cannot unwrap, and can be driven from outside the optimizer step
(``step_begin="caller"``), as the Lightning callback does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.recording.optimizers import unwrap_optimizer

from ._reference import ActivationReference, gradwatch_hooks, layer_norms


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))


class _Wrapper:
    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer

    def step(self) -> None:
        self.optimizer.step()


class _StepNorms:
    """Reference: per-layer gradient norms in a step pre-hook of the real optimizer."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.norms: list[dict[str, float]] = []
        self.handle = optimizer.register_step_pre_hook(
            lambda *a: self.norms.append(layer_norms(model))
        )


def _assert_rows(trace: gw.Trace, norms: list[dict[str, float]]) -> None:
    g = trace.matrix("grad_norm")
    assert g.shape[0] == len(norms)
    for k, row in enumerate(norms):
        for name, value in row.items():
            np.testing.assert_allclose(g[k, trace.layer_names.index(name)], value, rtol=1e-5)


# ---------------------------------------------------------------------- unwrapping
def test_a_chain_of_wrappers_is_followed_to_the_torch_optimizer() -> None:
    """Two nested `.optimizer` wrappers: gw.watch records through the inner optimizer."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    wrapped = _Wrapper(_Wrapper(opt))
    assert unwrap_optimizer(wrapped) is opt
    with gw.watch(model, wrapped) as w:  # type: ignore[arg-type]
        assert w.optimizer is opt
        for _ in range(3):
            model(torch.randn(8, 4)).pow(2).mean().backward()
            wrapped.step()
            opt.zero_grad()
    assert w.num_steps == 3
    assert gradwatch_hooks(model, opt) == 0


@pytest.mark.parametrize(
    "bad",
    [_Wrapper(None), _Wrapper("sgd"), object(), nn.Linear(2, 2)],
    ids=["none-inside", "string-inside", "object", "module"],
)
def test_what_cannot_be_unwrapped_is_refused_naming_its_type(bad: Any) -> None:
    """A wrapper with no torch optimizer inside fails with a TypeError naming the type."""
    with pytest.raises(TypeError, match=type(bad).__name__):
        gw.watch(_mlp(), bad)


def test_a_wrapper_cycle_is_refused() -> None:
    """A wrapper whose `.optimizer` leads back to itself does not loop forever."""
    a, b = _Wrapper(None), _Wrapper(None)
    a.optimizer, b.optimizer = b, a
    with pytest.raises(TypeError, match="_Wrapper -> _Wrapper"):
        unwrap_optimizer(a)


def test_lightning_optimizer_is_unwrapped() -> None:
    """Lightning's LightningOptimizer unwraps to the optimizer it holds."""
    pl = pytest.importorskip("pytorch_lightning")
    opt = torch.optim.Adam(_mlp().parameters())
    assert unwrap_optimizer(pl.core.optimizer.LightningOptimizer(opt)) is opt


@pytest.fixture
def accelerator() -> Iterator[Any]:
    """A CPU Accelerator, its process-wide state reset afterwards."""
    accelerate = pytest.importorskip("accelerate")
    yield accelerate.Accelerator(cpu=True)
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def test_accelerate_prepared_training_with_accumulation() -> None:
    """Accelerator.prepare-d model and optimizer, accumulating 3 batches per step: one row per
    optimizer step, each equal to the norms the real optimizer's pre-hook sees."""
    accelerate = pytest.importorskip("accelerate")
    acc = accelerate.Accelerator(cpu=True, gradient_accumulation_steps=3)
    torch.manual_seed(0)
    model = _mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    data = torch.utils.data.DataLoader(torch.randn(36, 4), batch_size=4)
    pmodel, popt, pdata = acc.prepare(model, opt, data)
    assert type(popt).__name__ == "AcceleratedOptimizer"
    ref = _StepNorms(model, opt)  # before gw.watch: it sees the same gradients first
    with gw.watch(pmodel, popt) as w:
        for x in pdata:
            with acc.accumulate(pmodel):
                acc.backward(pmodel(x).pow(2).mean())
                popt.step()
                popt.zero_grad()
    ref.handle.remove()
    assert len(ref.norms) == 3 and w.num_steps == 3
    _assert_rows(w.trace, ref.norms)
    assert gradwatch_hooks(model, opt) == 0


def test_accelerated_optimizer_under_its_grad_scaler(accelerator: Any) -> None:
    """accelerate's own GradScaler skips step 2 (inf loss): without `scaler` the skipped step
    is not counted (the inner optimizer never stepped); with `scaler=` it is recorded as
    skipped. The other rows hold unscaled gradients, as the inner optimizer sees them."""
    from accelerate.optimizer import AcceleratedOptimizer

    for pass_scaler in (False, True):
        torch.manual_seed(0)
        model = _mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cpu", init_scale=64.0)
        acc_opt = AcceleratedOptimizer(opt, device_placement=False, scaler=scaler)
        ref = _StepNorms(model, opt)
        with gw.watch(model, acc_opt, scaler=scaler if pass_scaler else None) as w:
            for i in range(4):
                loss = model(torch.randn(8, 4)).pow(2).mean()
                acc_opt.zero_grad()
                scaler.scale(loss * float("inf") if i == 2 else loss).backward()
                acc_opt.step()
        ref.handle.remove()
        assert len(ref.norms) == 3
        t = w.trace
        if pass_scaler:
            assert w.num_steps == 4 and t.scalar("skipped").tolist() == [0, 0, 1, 0]
            g = t.matrix("grad_norm")[[0, 1, 3]]
        else:
            assert w.num_steps == 3
            g = t.matrix("grad_norm")
        for k, row in enumerate(ref.norms):
            for name, value in row.items():
                np.testing.assert_allclose(g[k, t.layer_names.index(name)], value, rtol=1e-5)


# ---------------------------------------------------------------------- optimizer.step(closure)
class _ClosureRun:
    """A loop that steps with ``optimizer.step(closure)``: the reference keeps, per step, the
    gradient norms and tanh outputs of the closure's first call (the gradient at the weights
    the step starts from; LBFGS calls it again at trial points) and the calls made."""

    def __init__(self, make: Any) -> None:
        torch.manual_seed(0)
        self.model = _mlp()
        self.opt = make(self.model.parameters())
        self.norms: list[dict[str, float]] = []
        self.calls: list[int] = []
        tanhs = {n: m for n, m in self.model.named_modules() if isinstance(m, nn.Tanh)}
        self.acts = ActivationReference(tanhs)

    def closure(self, k: int, x: torch.Tensor, w: Any = None) -> Any:
        self.calls.append(0)

        def closure() -> torch.Tensor:
            self.calls[-1] += 1
            first = self.calls[-1] == 1
            self.acts.step = k if first else -1  # a trial point's forward is not step k's
            self.opt.zero_grad()
            loss = self.model(x).sub(x[:, :1]).pow(2).mean()
            loss.backward()
            if first:
                self.norms.append(layer_norms(self.model))
            if w is not None:
                w.begin_step()  # as Lightning does, in every call
            return loss

        return closure

    def assert_recorded(self, trace: gw.Trace, steps: int) -> None:
        self.acts.remove()
        assert trace.steps.tolist() == list(range(steps))
        assert not trace.scalar("skipped").any()
        _assert_rows(trace, self.norms)
        act = trace.matrix("act_mean")
        for k in range(steps):
            for name, layer in (("1", "0"), ("3", "2")):
                col = trace.layer_names.index(layer)
                assert act[k, col] == pytest.approx(self.acts.mean(k, name), rel=1e-5, abs=1e-7)
        assert np.isfinite(trace.matrix("update_ratio")).all()
        assert gradwatch_hooks(self.model, self.opt) == 0


_CLOSURE_OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "lbfgs": lambda p: torch.optim.LBFGS(p, lr=0.5, max_iter=4),
}


@pytest.mark.parametrize("keyword", [False, True], ids=["positional", "keyword"])
@pytest.mark.parametrize("name", list(_CLOSURE_OPTIMIZERS))
def test_a_step_given_a_closure_records_the_gradients_its_first_call_made(
    name: str, keyword: bool
) -> None:
    """optimizer.step(closure) makes the step's gradients inside the step, after its
    pre-hook: each row holds the gradients and activations of that step's first closure
    call (none stale by a step, none missing at step 0), LBFGS's later calls left out."""
    run = _ClosureRun(_CLOSURE_OPTIMIZERS[name])
    with gw.watch(run.model, run.opt, sample_every=1, overhead=None) as w:
        for k in range(5):
            closure = run.closure(k, torch.randn(16, 4))
            loss = run.opt.step(closure=closure) if keyword else run.opt.step(closure)
            w.log(loss=loss)
    run.assert_recorded(w.trace, 5)
    assert max(run.calls) == (4 if name == "lbfgs" else 1)


def test_a_closure_the_optimizer_never_calls_still_records_its_step() -> None:
    """An optimizer that takes a closure and ignores it: the step begins at its post-hook,
    with the gradients the loop made before it."""

    class IgnoresClosure(torch.optim.Optimizer):
        def __init__(self, params: Any) -> None:
            super().__init__(params, {"lr": 0.1})

        @torch.no_grad()
        def step(self, closure: Any = None) -> None:  # type: ignore[override]
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.add_(p.grad, alpha=-group["lr"])

    model = _mlp()
    opt = IgnoresClosure(model.parameters())
    norms: list[dict[str, float]] = []
    with gw.watch(model, opt, overhead=None) as w:
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(8, 4)).pow(2).mean().backward()
            norms.append(layer_norms(model))
            opt.step(lambda: pytest.fail("the watch called the closure itself"))
    _assert_rows(w.trace, norms)
    assert w.num_steps == 3


class _SAM(torch.optim.Optimizer):
    """Sharpness-aware minimisation as its reference implementation steps with a closure
    (github.com/davda54/sam): the loop's backward gives the gradient at the weights, the
    step moves them uphill by rho, runs the closure there, and steps from where they were."""

    def __init__(self, params: Any, rho: float = 0.05, **sgd: Any) -> None:
        super().__init__(params, {"rho": rho, **sgd})
        self.base = torch.optim.SGD(self.param_groups, **sgd)
        self.param_groups = self.base.param_groups

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.stack([p.grad.norm() for p in params]).norm()
        for p in params:
            self.state[p]["old"] = p.detach().clone()
            p.add_(p.grad * (self.param_groups[0]["rho"] / (norm + 1e-12)))
        with torch.enable_grad():
            closure()
        for p in params:
            p.copy_(self.state[p]["old"])
        self.base.step()


def test_a_closure_after_the_loops_own_backward_leaves_the_step_where_it_began() -> None:
    """SAM: a backward before optimizer.step(closure), whose closure runs at weights the
    step moved. From the second such step (the backward is seen by a hook attached at the
    first) the step begins at once: the gradients the loop made, and the update from the
    weights the step started at (the closure's point would add the uphill move to it)."""
    torch.manual_seed(0)
    model = _mlp()
    opt = _SAM(model.parameters(), lr=0.05, momentum=0.9)
    norms: list[dict[str, float]] = []
    ratios: list[float] = []
    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        return loss

    with gw.watch(model, opt, sample_every=1, overhead=None) as w:
        for _ in range(4):
            closure()
            norms.append(layer_norms(model))
            before = model[0].weight.detach().clone(), model[0].bias.detach().clone()
            opt.step(closure)
            after = model[0].weight.detach(), model[0].bias.detach()
            change = torch.cat([(a - b).flatten() for a, b in zip(after, before, strict=True)])
            ratios.append(float(change.norm() / torch.cat([b.flatten() for b in before]).norm()))
    trace = w.trace
    _assert_rows(trace, [{} if k == 0 else n for k, n in enumerate(norms)])
    col = trace.layer_names.index("0")
    np.testing.assert_allclose(trace.matrix("update_ratio")[1:, col], ratios[1:], rtol=1e-4)
    assert gradwatch_hooks(model, opt) == 0 and not model[0].weight._post_accumulate_grad_hooks


# ---------------------------------------------------------------------- step_begin="caller"
def test_caller_driven_steps_record_the_gradients_made_inside_a_closure() -> None:
    """optimizer.step(closure) with forward and backward inside the closure (Lightning's
    automatic optimisation): begin_step() after the backward records that step's gradients,
    activations on sampled steps, and update ratios through the post-hook."""
    torch.manual_seed(0)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    norms: list[dict[str, float]] = []
    with gw.watch(
        model, opt, step_begin="caller", sample_every=2, dense_steps=0, overhead=None
    ) as w:

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = model(torch.randn(8, 4)).pow(2).mean()
            loss.backward()
            norms.append(layer_norms(model))
            w.begin_step()
            return loss

        for _ in range(5):
            opt.step(closure)
    t = w.trace
    _assert_rows(t, norms)
    sampled = ~np.isnan(t.matrix("act_mean")[:, 0])
    assert sampled.tolist() == [True, False, True, False, True]
    assert (~np.isnan(t.matrix("update_ratio")[:, 0])).tolist() == sampled.tolist()
    assert gradwatch_hooks(model, opt) == 0


def test_a_caller_that_begins_in_every_closure_call_counts_one_step() -> None:
    """LBFGS under Lightning: the closure, and the begin_step() inside it, run several times
    in one optimizer step. The first begins the step; the later ones are not skipped steps."""
    run = _ClosureRun(_CLOSURE_OPTIMIZERS["lbfgs"])
    with gw.watch(run.model, run.opt, step_begin="caller", sample_every=1, overhead=None) as w:
        for k in range(4):
            run.opt.step(run.closure(k, torch.randn(16, 4), w))
    run.assert_recorded(w.trace, 4)
    assert max(run.calls) == 4


@pytest.mark.parametrize("skip", [1, 2])
def test_a_begun_step_the_optimizer_never_took_is_recorded_as_skipped(skip: int) -> None:
    """begin_step() without an optimizer step after it (a GradScaler skip): a skipped step,
    recorded when the next one begins, or at close() when it was the last (its gradients
    recorded all the same), and counting goes on."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt, step_begin="caller") as w:
        for i in range(3):
            model(torch.randn(8, 4)).pow(2).mean().backward()
            w.begin_step()
            if i != skip:
                opt.step()
            opt.zero_grad()
    assert w.num_steps == 3
    assert w.trace.scalar("skipped").tolist() == [float(i == skip) for i in range(3)]
    assert np.isfinite(w.trace.matrix("grad_norm")).all()


def test_step_begin_is_checked() -> None:
    """A wrong step_begin, a caller mode with no optimizer, and begin_step() on a watch the
    optimizer drives are refused with the fix."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="step_begin"):
        gw.watch(model, opt, step_begin="hook")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step_begin"):
        gw.watch(model, None, step_begin="caller")
    with gw.watch(model, opt) as w, pytest.raises(RuntimeError, match="begin_step"):
        w.begin_step()


def test_a_closure_that_raises_leaves_the_next_steps_recorded_once() -> None:
    """A closure raising inside optimizer.step: the error reaches the loop, and the steps
    after it (with or without a closure) are each recorded once, from their own gradients."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    norms: list[dict[str, float]] = []

    def failing() -> None:
        raise ValueError("boom")

    with gw.watch(model, opt, overhead=None) as w:
        with pytest.raises(ValueError, match="boom"):
            opt.step(failing)
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(8, 4)).pow(2).mean().backward()
            norms.append(layer_norms(model))
            opt.step()
    assert w.num_steps == 3
    _assert_rows(w.trace, norms)
