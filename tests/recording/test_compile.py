"""Under torch.compile gradwatch records what eager mode records, and the compiled graph stays
free of gradwatch: no graph break, no recompilation after warm-up, the user's layer names."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import gradwatch as gw
from gradwatch.trace import Trace, store
from gradwatch.trace.schema import LAYER_METRICS

Order = Literal[
    "eager", "compile_then_watch", "watch_then_compile", "compile_in_place", "compile_forward"
]
COMPILED_ORDERS: tuple[Order, ...] = (
    "compile_then_watch",
    "watch_then_compile",
    "compile_in_place",
    "compile_forward",  # Lightning's way: the bound forward compiled, the module's hooks not
)
SAMPLE_EVERY, DENSE = 5, 2


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    """Each test starts with no compiled code and zeroed counters (both are process-global)."""
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()
    counters.clear()


class MLP(nn.Module):
    """A user-defined class: ``model.compile()`` on torch's own containers (``nn.Sequential``)
    compiles nothing in torch 2.13, as dynamo skips torch.nn's frames at the top level."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return MLP()


class Block(nn.Module):
    """x + fc2(relu(fc1(ln(x)))): a pre-LN residual block."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 2 * d)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(self.ln(x))))


class ResidualNet(nn.Module):
    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.inp = nn.Linear(8, d)
        self.blocks = nn.Sequential(Block(d), Block(d))
        self.head = nn.Linear(d, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(torch.tanh(self.inp(x))))


def residual_net() -> nn.Module:
    torch.manual_seed(0)
    return ResidualNet()


class GRUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, T, 8)
        return self.head(out[:, -1])


def gru_net() -> nn.Module:
    torch.manual_seed(0)
    return GRUNet()


class CountingBackend:
    """A dynamo backend that counts the graphs it compiles and the calls of compiled code."""

    def __init__(self) -> None:
        self.compiles = 0
        self.calls = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        self.compiles += 1

        def run(*args: Any) -> Any:
            self.calls += 1
            return gm.forward(*args)

        return run


def train(
    make: Callable[[], nn.Module],
    order: Order,
    *,
    steps: int = 12,
    backend: Any = "aot_eager",
    x_shape: tuple[int, ...] = (32, 8),
    on_step: Callable[[int], None] | None = None,
    outputs: list[torch.Tensor] | None = None,
    compile_step: bool = False,
    overhead: float | None = None,
) -> tuple[Trace, nn.Module]:
    """Train with gw.watch in the given order; the same seed and data in every order."""
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt_step = torch.compile(opt.step, backend=backend) if compile_step else opt.step
    fwd: nn.Module = model
    if order == "compile_then_watch":
        fwd = torch.compile(model, backend=backend)  # type: ignore[assignment]
        w = gw.watch(fwd, opt, sample_every=SAMPLE_EVERY, dense_steps=DENSE, overhead=overhead)
    elif order == "watch_then_compile":
        w = gw.watch(model, opt, sample_every=SAMPLE_EVERY, dense_steps=DENSE, overhead=overhead)
        fwd = torch.compile(model, backend=backend)  # type: ignore[assignment]
    elif order == "compile_in_place":
        model.compile(backend=backend)
        w = gw.watch(model, opt, sample_every=SAMPLE_EVERY, dense_steps=DENSE, overhead=overhead)
    elif order == "compile_forward":
        model.forward = torch.compile(model.forward, backend=backend)  # type: ignore[method-assign]
        w = gw.watch(model, opt, sample_every=SAMPLE_EVERY, dense_steps=DENSE, overhead=overhead)
    else:
        w = gw.watch(model, opt, sample_every=SAMPLE_EVERY, dense_steps=DENSE, overhead=overhead)
    gen = torch.Generator().manual_seed(1)
    with w:
        for step in range(steps):
            if on_step is not None:
                on_step(step)
            x = torch.randn(*x_shape, generator=gen)
            out = fwd(x)
            if outputs is not None:
                outputs.append(out.detach().clone())
            loss = out.pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt_step()
    if order != "eager" or compile_step:  # the compiled run did run compiled code
        assert counters["stats"]["unique_graphs"] >= 1
    return w.trace, model


def assert_same_statistics(eager: Trace, compiled: Trace, rtol: float, atol: float) -> None:
    assert compiled.layer_names == eager.layer_names
    assert compiled.metrics == eager.metrics
    assert np.array_equal(compiled.steps, eager.steps)
    for metric in eager.metrics:
        a, b = eager.matrix(metric), compiled.matrix(metric)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=metric)
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, equal_nan=True, err_msg=metric)
    assert compiled.scalar_names == eager.scalar_names
    for name in eager.scalar_names:
        np.testing.assert_allclose(
            compiled.scalar(name), eager.scalar(name), rtol=rtol, atol=atol, err_msg=name
        )


@pytest.mark.parametrize("order", COMPILED_ORDERS)
def test_compiled_statistics_equal_eager(order: Order) -> None:
    """Every per-layer matrix of a compiled run equals the eager run's (aot_eager backend)."""
    eager, _ = train(mlp, "eager")
    compiled, _ = train(mlp, order)
    assert set(eager.metrics) == set(LAYER_METRICS)  # every statistic is compared
    assert_same_statistics(eager, compiled, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("order", ["compile_then_watch", "watch_then_compile"])
def test_layer_names_are_the_users(order: Order) -> None:
    """Layers are named as in the user's module (no ``_orig_mod.``), in both orders."""
    trace, model = train(mlp, order, steps=3, backend="eager")
    assert trace.layer_names == ["net.0", "net.2", "net.4"]
    assert trace.meta["model"]["class"] == "MLP"
    assert trace.meta["model"]["num_params"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("order", ["eager", "compile_then_watch"])
def test_output_layer_statistics_match_an_independent_reference(order: Order) -> None:
    """The output layer's act_mean / act_std / out_grad_norm at each sampled step equal those
    of the model's output (loss = mean(out^2), so dL/dout = 2 out / N)."""
    outputs: list[torch.Tensor] = []
    trace, _ = train(mlp, order, steps=11, outputs=outputs)
    rows, _ = trace.measured("act_mean")
    assert list(rows) == [0, 1, 5, 10]
    for name, ref in (
        ("act_mean", lambda y: y.mean()),
        ("act_std", lambda y: y.std(unbiased=False)),
        ("out_grad_norm", lambda y: (2 * y / y.numel()).norm()),
    ):
        got = trace.matrix(name)[rows, -1]
        want = np.array([float(ref(outputs[int(s)].double())) for s in rows])
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=name)


@pytest.mark.parametrize("order", COMPILED_ORDERS)
def test_no_graph_break_and_no_recompile_after_warm_up(order: Order) -> None:
    """Over 30 steps (sampled every 5, 2 dense) the compiled model is compiled once, at its
    first plain step, with no graph break; every plain step runs that graph and no sampled
    step calls compiled code. After warm-up a recompile would raise (fail_on_recompile)."""
    backend = CountingBackend()
    compiles: list[int] = []
    calls: list[int] = []

    def on_step(step: int) -> None:
        compiles.append(backend.compiles)
        calls.append(backend.calls)
        if step == DENSE + 1:
            torch.compiler.set_stance("fail_on_recompile")

    try:
        train(mlp, order, steps=30, backend=backend, on_step=on_step)
    finally:
        torch.compiler.set_stance("default")
    assert backend.compiles == 1
    assert compiles[: DENSE + 1] == [0] * (DENSE + 1)  # sampled steps ran eagerly
    assert compiles[DENSE + 1 :] == [1] * (30 - DENSE - 1)
    assert counters["stats"]["unique_graphs"] == 1
    assert dict(counters["graph_break"]) == {}
    plain = [s for s in range(30) if not (s < DENSE or s % SAMPLE_EVERY == 0)]
    ran = np.diff([*calls, backend.calls])  # compiled calls made during each step
    assert [s for s in range(30) if ran[s]] == plain


@pytest.mark.parametrize("order", COMPILED_ORDERS)
def test_the_default_overhead_budget_adds_no_graph_break_or_recompile(order: Order) -> None:
    """With the budget on (gw.watch's default), its timers in the hooks stay out of the
    graph: one compile, no graph break, and a recompile after warm-up would raise."""
    backend = CountingBackend()

    def on_step(step: int) -> None:
        if step == DENSE + 1:
            torch.compiler.set_stance("fail_on_recompile")

    try:
        trace, _ = train(mlp, order, steps=30, backend=backend, on_step=on_step, overhead=0.03)
    finally:
        torch.compiler.set_stance("default")
    assert backend.compiles == 1
    assert counters["stats"]["unique_graphs"] == 1
    assert dict(counters["graph_break"]) == {}
    assert trace.config["overhead"] == 0.03 and "schedule" in trace.config


def test_a_compiled_optimizer_step_runs_the_recording_eagerly() -> None:
    """With the optimizer step compiled (and the model), the step hooks run eagerly behind one
    graph break each: statistics equal eager, and nothing recompiles after warm-up."""
    backend = CountingBackend()
    compiles: list[int] = []
    eager, _ = train(mlp, "eager", steps=12)
    compiled, _ = train(
        mlp,
        "compile_then_watch",
        steps=12,
        backend=backend,
        compile_step=True,
        on_step=lambda _: compiles.append(backend.compiles),
    )
    assert_same_statistics(eager, compiled, rtol=1e-5, atol=1e-7)
    warm = compiles[DENSE + 2]  # the model and the step, compiled on the first plain step
    assert warm >= 2 and compiles[DENSE + 2 :] == [warm] * (12 - DENSE - 2)
    breaks = " ".join(counters["graph_break"])
    assert "disable" in breaks and "Tensor.item" not in breaks  # no traced host read


def test_same_graph_count_as_without_gradwatch() -> None:
    """gradwatch adds no graph: the compiled model without it also makes exactly one."""
    model = mlp()
    backend = CountingBackend()
    cm = torch.compile(model, backend=backend)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(6):
        opt.zero_grad()
        cm(torch.randn(32, 8)).pow(2).mean().backward()
        opt.step()
    assert backend.compiles == 1
    assert dict(counters["graph_break"]) == {}


@pytest.mark.parametrize("order", ["compile_then_watch", "watch_then_compile"])
def test_residual_branches_found_under_compile(order: Order) -> None:
    """The residual branches of a compiled residual net are those found in eager mode."""
    eager, _ = train(residual_net, "eager", steps=3)
    compiled, _ = train(residual_net, order, steps=3)
    branches = {layer.name: layer.branch for layer in eager.layers}
    assert branches["blocks.0.fc1"] is not None
    assert {layer.name: layer.branch for layer in compiled.layers} == branches
    assert compiled.meta["structure"]["graph_seen"] is True
    assert (
        compiled.meta["structure"]["residual_branches"]
        == (eager.meta["structure"]["residual_branches"])
    )


def test_recurrent_profiles_equal_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiled GRU net records the same input-gradient profiles as in eager mode."""
    # Without allow_rnn dynamo skips a frame that calls an RNN module: nothing is compiled.
    monkeypatch.setattr(torch._dynamo.config, "allow_rnn", True)
    eager, _ = train(gru_net, "eager", steps=11, x_shape=(4, 6, 4))
    compiled, _ = train(gru_net, "compile_then_watch", steps=11, x_shape=(4, 6, 4))
    assert compiled.recurrent_layers == eager.recurrent_layers == ["rnn"]
    for kind in eager.profile_kinds("rnn"):
        a = eager.input_grad_profile("rnn", kind)
        b = compiled.input_grad_profile("rnn", kind)
        np.testing.assert_array_equal(a.steps, b.steps)
        np.testing.assert_allclose(b.values, a.values, rtol=1e-5, equal_nan=True)
    assert_same_statistics(eager, compiled, rtol=1e-5, atol=1e-7)


def test_stance_is_restored_on_close() -> None:
    """Watching the plain module, a sampled window runs compiled code eagerly process-wide;
    closing the watch inside that window lets it compile again, and a stance the user set
    before is the one in force after."""
    model = mlp()
    backend = CountingBackend()
    cm = torch.compile(model, backend=backend)
    with gw.watch(model, sample_every=1):  # every step sampled: the window never closes itself
        cm(torch.randn(2, 8))
    assert backend.compiles == 0
    cm(torch.randn(2, 8))
    assert backend.compiles == 1
    with torch.compiler.set_stance("eager_on_recompile"):
        w = gw.watch(model, sample_every=1)
        w.close()
        cm(torch.randn(3, 8))  # a new shape: a recompile, run eagerly under this stance
    assert backend.compiles == 1


def test_a_compiled_module_passed_to_watch_runs_eagerly_alone() -> None:
    """Given the compiled module, only it runs eagerly in a sampled window: another compiled
    function still compiles, and the module's compiled entry is back after close."""
    cm = torch.compile(mlp(), backend="eager")
    entry = cm.forward
    other = CountingBackend()
    double = torch.compile(lambda t: t * 2, backend=other)
    w = gw.watch(cm, sample_every=1)
    assert cm.forward != entry  # the window is open for step 0
    double(torch.randn(2))
    cm(torch.randn(2, 8))
    assert other.compiles == 1
    assert counters["stats"]["unique_graphs"] == 1  # the lambda's graph, not the model's
    w.close()
    assert cm.forward is entry


def test_windows_closing_in_any_order_put_back_what_was_there() -> None:
    """Two watches whose sampled windows close out of order (two models trained in turn)
    leave the default stance and each compiled module's own compiled entry."""
    backend = CountingBackend()
    a, b = mlp(), mlp()
    wa, wb = gw.watch(a, sample_every=1), gw.watch(b, sample_every=1)  # both windows open
    wa.close()  # the first opened closes first: b's window still holds the stance
    ca = torch.compile(a, backend=backend)
    ca(torch.randn(2, 8))
    assert backend.compiles == 0
    wb.close()
    ca(torch.randn(2, 8))
    assert backend.compiles == 1
    cm = torch.compile(mlp(), backend=backend)
    entry = cm.forward
    w1, w2 = gw.watch(cm, sample_every=1), gw.watch(cm, sample_every=1)
    w1.close()
    assert cm.forward is not entry  # w2's window is still open
    w2.close()
    assert cm.forward is entry


def test_inductor_statistics_equal_eager_and_output_layer_present() -> None:
    """With the default (inductor) backend, statistics equal eager's within float tolerance and
    the output layer's activation statistics are measured at every sampled step."""
    eager, _ = train(mlp, "eager", steps=11)
    compiled, _ = train(mlp, "watch_then_compile", steps=11, backend="inductor")
    assert_same_statistics(eager, compiled, rtol=1e-4, atol=1e-6)
    rows, values = compiled.measured("act_mean")
    assert np.isfinite(values[:, -1]).all() and len(rows) == 4


def test_a_stopped_recording_leaves_the_compiled_graph_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the disk fills and recording stops, no hook is left and the eager window is
    closed: every later step, sampled or not, runs the compiled graph."""
    real = pq.write_table
    writes = [0]

    def write(table: Any, where: Any, **kwargs: Any) -> None:
        writes[0] += 1
        if writes[0] > 2:  # the first flush (layers, scalars) is written, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(table, where, **kwargs)

    monkeypatch.setattr(store.pq, "write_table", write)
    backend = CountingBackend()
    model = mlp()
    cm = torch.compile(model, backend=backend)
    entry = cm.forward
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls: list[int] = []
    with pytest.warns(RuntimeWarning, match="stopped recording"):
        w = gw.watch(
            cm, opt, tmp_path / "run", sample_every=5, dense_steps=2, flush_every=10, overhead=None
        )
        for _ in range(30):
            calls.append(backend.calls)
            loss = cm(torch.randn(32, 8)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert cm.forward is entry  # before close: the stop put the compiled entry back
    ran = np.diff([*calls, backend.calls])
    # Step 20's flush failed in its optimizer step, after its (sampled, eager) forward; from
    # step 21 on every step is compiled, the sampled step 25 too.
    assert list(ran[20:]) == [0] + [1] * 9
    w.close()
