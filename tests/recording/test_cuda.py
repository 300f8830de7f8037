"""The recorder on a CUDA device: same statistics as a float64 reference, no host sync per step.

Skipped on hosts without CUDA; run on a GPU machine with ``pytest tests/recording/test_cuda.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 8)
    ).cuda()


def _flat(ps: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().double().flatten() for p in ps])


def test_cuda_statistics_match_a_float64_reference() -> None:
    """grad_norm/rms/max, weight_norm, update_ratio and out_grad_norm on CUDA match float64."""
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    x = torch.randn(32, 64, device="cuda")
    expected: list[dict[str, list[float]]] = []
    outs: list[torch.Tensor] = []
    with gw.watch(model, opt, sample_every=1) as w:
        for _ in range(3):
            opt.zero_grad()
            outs.clear()
            hs = [m.register_forward_hook(lambda _m, _a, o: outs.append(o)) for m in linears]
            y = model(x)
            for o in outs:
                o.retain_grad()
            y.pow(2).mean().backward()
            for h in hs:
                h.remove()
            before = [_flat(list(m.parameters())) for m in linears]
            grads = [_flat([p.grad for p in m.parameters()]) for m in linears]  # type: ignore[misc]
            opt.step()
            after = [_flat(list(m.parameters())) for m in linears]
            expected.append(
                {
                    "grad_norm": [g.norm().item() for g in grads],
                    "grad_rms": [(g.norm() / math.sqrt(g.numel())).item() for g in grads],
                    "grad_max": [g.abs().max().item() for g in grads],
                    "weight_norm": [b.norm().item() for b in before],
                    "update_ratio": [
                        ((a - b).norm() / b.norm()).item()
                        for a, b in zip(after, before, strict=True)
                    ],
                    "out_grad_norm": [o.grad.double().norm().item() for o in outs],  # type: ignore[union-attr]
                }
            )
    t = w.trace
    assert t.meta["config"]["device"].startswith("cuda")
    for metric in expected[0]:
        want = np.array([e[metric] for e in expected])
        np.testing.assert_allclose(t.matrix(metric), want, rtol=1e-4, err_msg=metric)
    np.testing.assert_array_equal(t.matrix("nonfinite"), np.zeros((3, 3)))


def test_cuda_steps_make_no_host_sync() -> None:
    """Between flushes, recording a step (sampled or not) never synchronises with the host."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    x = torch.randn(32, 64, device="cuda")

    def step(w: gw.Watch) -> None:
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        w.log(loss=loss)

    with gw.watch(model, opt, sample_every=2, flush_every=50) as w:
        step(w)  # step 0 finds the layer order (host work, once)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(6):
                step(w)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert w.num_steps == 7
    assert np.isfinite(w.trace.matrix("grad_norm")).all()


def test_cuda_logged_losses_are_read_at_the_flush_and_exact() -> None:
    """The loss is kept by reference on the GPU (no copy at log()), a running total copied:
    both exact across windows, against .item() taken at each step."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    x = torch.randn(32, 64, device="cuda")
    running = torch.zeros((), device="cuda")
    losses, totals = [], []
    with gw.watch(model, opt, flush_every=4) as w:
        for _ in range(10):
            opt.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            opt.step()
            running += loss.detach()
            w.log(loss=loss, running=running)
            assert [type(v).__name__ for _, v in w._buffer._pending[-2:]] == ["_Kept", "Tensor"]
            losses.append(loss.item())
            totals.append(running.item())
    np.testing.assert_allclose(w.trace.scalar("loss"), losses, rtol=1e-6)
    np.testing.assert_allclose(w.trace.scalar("running"), totals, rtol=1e-6)


def test_cuda_nonfinite_is_a_flag_per_layer() -> None:
    """On CUDA a layer with NaN gradients gets nonfinite = 1 (a flag), others 0."""
    model = _model()
    with gw.watch(model, activations=False) as w:
        model(torch.randn(4, 64, device="cuda")).sum().backward()
        with torch.no_grad():
            model[2].weight.grad[0, :3] = math.nan  # type: ignore[index,operator]
        w.step()
    t = w.trace
    assert t.meta["config"]["nonfinite_exact"] is False
    np.testing.assert_array_equal(t.matrix("nonfinite")[0], [0.0, 1.0, 0.0])


def test_cuda_grad_scaler_skipped_step() -> None:
    """Under autocast + GradScaler, a step with an inf gradient is recorded as skipped."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    x = torch.randn(16, 64, device="cuda")
    with gw.watch(model, opt, scaler=scaler) as w:
        for i in range(3):
            opt.zero_grad()
            with torch.autocast("cuda", dtype=torch.float16):
                loss = model(x).float().pow(2).mean()
            scaler.scale(loss).backward()
            if i == 1:
                with torch.no_grad():
                    model[0].weight.grad[0, 0] = math.inf  # type: ignore[index,operator]
            scaler.step(opt)
            scaler.update()
    np.testing.assert_array_equal(w.trace.scalar("skipped"), [0, 1, 0])


def test_cuda_fused_optimizer_under_grad_scaler_without_a_sync() -> None:
    """Fused AdamW under GradScaler: gradients recorded unscaled, the step with an inf
    flagged skipped on the device (no update ratio), and no host sync on any step."""
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**10)
    x = torch.randn(16, 64, device="cuda")
    unscaled = []
    with gw.watch(model, opt, scaler=scaler, sample_every=1, flush_every=50) as w:
        for i in range(4):
            opt.zero_grad()
            with torch.autocast("cuda", dtype=torch.float16):
                loss = model(x).float().pow(2).mean()
            scaler.scale(loss).backward()
            if i == 2:
                with torch.no_grad():
                    model[0].weight.grad[0, 0] = math.inf  # type: ignore[index,operator]
            unscaled.append(float(_flat([p.grad for p in model.parameters()]).norm()) / 1024.0)
            if i == 1:
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")
            try:
                scaler.step(opt)
            finally:
                torch.cuda.set_sync_debug_mode("default")
            scaler.update()
    t = w.trace
    np.testing.assert_array_equal(t.scalar("skipped"), [0, 0, 1, 0])
    norms = t.scalar("global_grad_norm")
    np.testing.assert_allclose(norms[:2], unscaled[:2], rtol=1e-4)
    assert np.isnan(t.matrix("update_ratio")[2]).all()
    assert np.isfinite(t.matrix("update_ratio")[[0, 1]]).all()


@pytest.mark.parametrize("path", ["batched", "in-hook"])
def test_cuda_activation_statistics_match_a_float64_reference(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """act_mean, act_std, act_saturated (tanh), act_dead (ReLU) and act_between_inputs on
    CUDA equal float64 statistics of the activations' outputs: the batched reductions' device
    path, and each output reduced in its hook (the ReLU's by one var_mean per output)."""
    from gradwatch.recording import activations

    if path == "in-hook":
        monkeypatch.setattr(activations, "_STASH_BYTES", 0)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    acts = [m for m in model if isinstance(m, (nn.Tanh, nn.ReLU))]
    x = 3.0 * torch.randn(64, 64, device="cuda")  # saturates part of the tanh units
    outs: list[torch.Tensor] = []
    hs = [m.register_forward_hook(lambda _m, _a, o: outs.append(o.detach().double())) for m in acts]
    with gw.watch(model, opt, sample_every=1, overhead=None) as w:
        for _ in range(2):
            outs.clear()
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    for h in hs:
        h.remove()
    t = w.trace
    tanh_out, relu_out = outs  # the last step's
    np.testing.assert_allclose(
        t.matrix("act_mean")[-1, :2],
        [tanh_out.mean().item(), relu_out.mean().item()],
        rtol=1e-4,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        t.matrix("act_std")[-1, :2],
        [tanh_out.std(unbiased=False).item(), relu_out.std(unbiased=False).item()],
        rtol=1e-4,
    )
    assert t.matrix("act_saturated")[-1, 0] == pytest.approx(
        (tanh_out.abs() > 0.97).double().mean().item()
    )
    dead = ((relu_out > 0).sum(0) == 0).double().mean().item()
    assert t.matrix("act_dead")[-1, 1] == pytest.approx(dead)
    # The share of each output's variance that differs between the 64 inputs.
    shares = [
        ((y - y.mean(0)).square().sum() / (y - y.mean()).square().sum()).item()
        for y in (tanh_out, relu_out)
    ]
    np.testing.assert_allclose(t.matrix("act_between_inputs")[-1, :2], shares, rtol=1e-4)


def test_cuda_overhead_budget_times_with_cuda_events_without_a_sync() -> None:
    """At the default budget the CUDA timer reads its events without blocking: past the dense
    start no step synchronises with the host, and the schedule reports a measured share."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    x = torch.randn(32, 64, device="cuda")
    with gw.watch(model, opt, dense_steps=5, flush_every=1000) as w:
        for i in range(160):
            if i == 10:
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")
            try:
                opt.zero_grad()
                model(x).pow(2).mean().backward()
                opt.step()
            except Exception:
                torch.cuda.set_sync_debug_mode("default")
                raise
        torch.cuda.set_sync_debug_mode("default")
    sched = w.trace.config["schedule"]
    assert sched["steps_measured"] > 100
    share = sched["measured_share"]
    assert share is not None and 0.0 < share < 1.0
    assert sched["sample_spacing"] >= 10


def test_cuda_fp16_underflow_matches_a_float64_count() -> None:
    """Under CUDA fp16 autocast + GradScaler, grad_underflow is the float64 share of entries
    with |g| * scale < 2**-14."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**3)
    x = torch.randn(16, 64, device="cuda")
    seen: list[list[torch.Tensor]] = []

    with gw.watch(model, opt, scaler=scaler, sample_every=1, overhead=None) as w:
        opt.register_step_pre_hook(
            lambda *_: seen.append([p.grad.detach().double().clone() for p in model.parameters()])  # type: ignore[union-attr]
        )
        for _ in range(2):
            opt.zero_grad()
            with torch.autocast("cuda", dtype=torch.float16):
                loss = 1e-3 * model(x).float().pow(2).mean()
            scaler.scale(loss).backward()
            scale = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
    grads = seen[-1]
    want = []
    for g_w, g_b in zip(grads[::2], grads[1::2], strict=True):
        below = int((g_w.abs() * scale < 2.0**-14).sum()) + int(
            (g_b.abs() * scale < 2.0**-14).sum()
        )
        want.append(below / (g_w.numel() + g_b.numel()))
    np.testing.assert_allclose(w.trace.matrix("grad_underflow")[-1], want, rtol=1e-6)


def test_cuda_compiled_model_records_what_the_eager_one_does() -> None:
    """torch.compile (inductor, CUDA): the recorded gradient and activation statistics equal
    those of the same model trained eagerly."""
    x = torch.randn(32, 64, device="cuda")

    def run(compiled: bool) -> gw.Trace:
        model = _model()
        opt = torch.optim.SGD(model.parameters(), lr=1e-2)
        net = torch.compile(model) if compiled else model
        with gw.watch(net, opt, sample_every=2, overhead=None) as w:
            for _ in range(4):
                opt.zero_grad()
                net(x).pow(2).mean().backward()
                opt.step()
        return w.trace

    eager, compiled = run(False), run(True)
    for metric in ("grad_norm", "weight_norm", "update_ratio", "act_mean", "act_std"):
        np.testing.assert_allclose(
            compiled.matrix(metric), eager.matrix(metric), rtol=2e-3, err_msg=metric
        )
