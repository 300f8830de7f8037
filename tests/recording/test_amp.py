"""Mixed precision: per-layer gradient underflow, skipped steps named by layer, reduce=."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

import gradwatch as gw

FP16_TINY = 2.0**-14  # smallest normal float16
BF16_TINY = 2.0**-126  # smallest normal bfloat16 (float32's exponent range)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2)
    )


def _batches(n: int = 4) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(16, 6, generator=gen) for _ in range(n)]


def _capture(opt: torch.optim.Optimizer, model: nn.Module, seen: list[list[torch.Tensor]]) -> None:
    """Keep the gradients the optimizer step receives (registered after the watch's hook)."""

    def hook(optimizer: Any, args: Any, kwargs: Any) -> None:
        seen.append([p.grad.detach().double().clone() for p in model.parameters()])

    opt.register_step_pre_hook(hook)


def _naive_fraction(grads: list[torch.Tensor], threshold: float) -> np.ndarray:
    """Per layer (weight, bias pairs), the float64 fraction of entries below ``threshold``."""
    out = []
    for w, b in zip(grads[::2], grads[1::2], strict=True):
        below = int((w.abs() < threshold).sum()) + int((b.abs() < threshold).sum())
        out.append(below / (w.numel() + b.numel()))
    return np.array(out)


def test_fp16_autocast_underflow_is_counted_at_the_loss_scale() -> None:
    """Under fp16 autocast with a GradScaler, an entry underflows when |g| * scale < 2**-14."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    # A small scale leaves a measurable share of entries below fp16's normal range.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**3, growth_interval=1)
    seen: list[list[torch.Tensor]] = []
    scales: list[float] = []
    with gw.watch(model, opt, scaler=scaler, sample_every=1) as w:
        _capture(opt, model, seen)
        for x in _batches():
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.float16):
                loss = 1e-3 * model(x).float().pow(2).mean()
            scaler.scale(loss).backward()
            scales.append(scaler.get_scale())
            scaler.step(opt)
            scaler.update()
    got = w.trace.matrix("grad_underflow")
    assert len(seen) == got.shape[0] == 4
    want = np.stack([_naive_fraction(g, FP16_TINY / s) for g, s in zip(seen, scales, strict=True)])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # The scale grows every step (growth_interval=1), so fewer entries underflow over time.
    assert (got[0] > 0).any() and got[-1].sum() < got[0].sum()


def test_bf16_autocast_underflow_uses_bf16_range() -> None:
    """Under bf16 autocast (no scaler) the threshold is bf16's smallest normal, 2**-126."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    seen: list[list[torch.Tensor]] = []
    with gw.watch(model, opt, sample_every=1) as w:
        _capture(opt, model, seen)
        for x in _batches(3):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(x).float().pow(2).mean()
            loss.backward()
            opt.step()
    got = w.trace.matrix("grad_underflow")
    want = np.stack([_naive_fraction(g, BF16_TINY) for g in seen])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # Dead ReLU units' zero gradients count: something was below the range.
    assert np.isfinite(got).all() and (got > 0).any()


@pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is not available in this build",
)
def test_fsdp2_mixed_precision_counts_underflow_in_its_param_dtype(tmp_path: Path) -> None:
    """Under ``fully_shard(mp_policy=MixedPrecisionPolicy(param_dtype=float16))`` the sharded
    gradients stay float32, but the backward ran in float16: entries below 2**-14 count, as a
    float64 count of the gradients the optimizer receives says (one process, gloo)."""
    import torch.distributed as dist
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from gradwatch.recording.precision import fsdp_param_dtype

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        model = _model()
        assert fsdp_param_dtype(model) is None
        fully_shard(model, mp_policy=MixedPrecisionPolicy(param_dtype=torch.float16))
        assert fsdp_param_dtype(model) is torch.float16
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        seen: list[list[torch.Tensor]] = []
        with gw.watch(model, opt, sample_every=1) as w:
            opt.register_step_pre_hook(
                lambda *_: seen.append(
                    [p.grad.full_tensor().double() for p in model.parameters()]  # type: ignore[union-attr]
                )
            )
            for x in _batches(3):
                opt.zero_grad()
                (1e-3 * model(x).float().pow(2).mean()).backward()
                opt.step()
        got = w.trace.matrix("grad_underflow")
        want = np.stack([_naive_fraction(g, FP16_TINY) for g in seen])
        np.testing.assert_allclose(got, want, rtol=1e-6)
        assert (got > 0).any()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("activations", [True, False])
def test_autocast_is_read_on_sampled_steps_only(activations: bool) -> None:
    """The autocast reader is attached with the sampled steps' hooks, so the model's other
    forwards run without a hook, and the sampled steps still count bf16 underflow; without
    activation hooks (nothing else is attached per step) it stays on every forward."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    seen: list[list[torch.Tensor]] = []
    hooked: list[bool] = []
    options: dict[str, Any] = {"sample_every": 3, "dense_steps": 0, "overhead": None}
    with gw.watch(model, opt, activations=activations, **options) as w:
        _capture(opt, model, seen)
        for x in _batches(7):
            opt.zero_grad()
            hooked.append(bool(model._forward_pre_hooks))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(x).float().pow(2).mean()
            loss.backward()
            opt.step()
    sampled = [0, 3, 6]
    steps, got = w.trace.measured("grad_underflow")
    assert steps.tolist() == sampled
    want = np.stack([_naive_fraction(seen[s], BF16_TINY) for s in sampled])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert hooked == ([s in sampled for s in range(7)] if activations else [True] * 7)


def test_half_weights_count_in_their_own_dtype() -> None:
    """A model cast to float16 (fp16 gradients, no scaler) counts |g| < 2**-14 as is."""
    model = _model().half()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    seen: list[list[torch.Tensor]] = []
    with gw.watch(model, opt, sample_every=1) as w:
        _capture(opt, model, seen)
        for x in _batches(2):
            opt.zero_grad()
            (1e-3 * model(x.half()).float().pow(2).mean()).backward()
            opt.step()
    want = np.stack([_naive_fraction(g, FP16_TINY) for g in seen])
    np.testing.assert_allclose(w.trace.matrix("grad_underflow"), want, rtol=1e-6)
    assert (want > 0).any()


def test_fp32_training_leaves_underflow_unmeasured() -> None:
    """Without autocast, half-precision weights or a GradScaler the metric is missing (NaN)."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gw.watch(model, opt, sample_every=1) as w:
        for x in _batches(2):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    assert np.isnan(w.trace.matrix("grad_underflow")).all()


def test_gradscaler_skip_names_the_layer_with_inf() -> None:
    """A step GradScaler skips lists the layer whose gradient held the inf."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu")
    step = {"n": 0}

    def poison(g: torch.Tensor) -> torch.Tensor:
        if step["n"] == 2:
            g = g.clone()
            g[0, 0] = float("inf")
        return g

    model[2].weight.register_hook(poison)
    with gw.watch(model, opt, scaler=scaler) as w:
        for x in _batches():
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.float16):
                loss = model(x).float().pow(2).mean()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            step["n"] += 1
    trace = w.trace
    assert trace.skipped_steps() == {2: ["L1 2"]}
    assert trace.matrix("nonfinite")[2].tolist() == [0.0, 1.0, 0.0]
    finding = next(f for f in gw.diagnose(trace) if f.rule == "nonfinite_gradient")
    assert "step 2" in finding.message and "'L1 2'" in finding.message


def test_log_reduce_is_validated() -> None:
    """reduce= takes "mean", "sum" or None, one per name; alone a value is its own mean."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gw.watch(model, opt) as w:
        opt.zero_grad()
        model(_batches(1)[0]).pow(2).mean().backward()
        opt.step()
        w.log(loss=torch.tensor(0.5), reduce="mean")
        with pytest.raises(ValueError, match="`reduce`.*'avg'"):
            w.log(loss=0.5, reduce="avg")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="reduce='mean' and now with reduce='sum'"):
            w.log(loss=0.5, reduce="sum")
    assert w.trace.scalar("loss").tolist() == [0.5]


def test_run_dir_without_underflow_column_still_loads(tmp_path: Path) -> None:
    """A run directory written before grad_underflow existed loads; the metric is absent."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gw.watch(model, opt, run_dir=tmp_path / "run") as w:
        for x in _batches(2):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    for chunk in (tmp_path / "run").glob("layers-*.parquet"):
        table = pq.read_table(chunk)
        pq.write_table(table.drop_columns(["grad_underflow"]), chunk)
    trace = gw.load(tmp_path / "run")
    assert "grad_underflow" not in trace.metrics
    np.testing.assert_allclose(trace.matrix("grad_norm"), w.trace.matrix("grad_norm"))


def test_skipped_steps_of_traces_without_counts() -> None:
    """skipped_steps() is empty without a skipped column and lists no layer without counts."""
    from gradwatch.trace import Trace

    plain = Trace.from_arrays(["fc0"], [0, 1], {"grad_norm": [[1.0], [1.0]]})
    assert plain.skipped_steps() == {}
    no_counts = Trace.from_arrays(
        ["fc0"], [0, 1], {"grad_norm": [[1.0], [1.0]]}, scalars={"skipped": [0, 1]}
    )
    assert no_counts.skipped_steps() == {1: []}


@pytest.mark.parametrize("activations", [True, False])
def test_autocast_entered_inside_forward_is_read(activations: bool) -> None:
    """accelerate's bf16 ``prepare`` (and so the Hugging Face Trainer) enters autocast inside
    ``model.forward``, after the model's own pre-hook: the first layer's reading counts,
    and the underflow is the float64 bf16 count, as under an autocast around the call."""
    accelerate = pytest.importorskip("accelerate")
    from accelerate.state import AcceleratorState, GradientState

    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    # accelerate's state is process-wide: another test's Accelerator may have set it.
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        wrapped = accelerate.Accelerator(mixed_precision="bf16", cpu=True).prepare_model(model)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    assert wrapped is model and "forward" in vars(model)  # the forward itself is wrapped
    seen: list[list[torch.Tensor]] = []
    with gw.watch(model, opt, activations=activations, sample_every=1, overhead=None) as w:
        _capture(opt, model, seen)
        for x in _batches(3):
            opt.zero_grad()
            model(x).float().pow(2).mean().backward()
            opt.step()
    want = np.stack([_naive_fraction(g, BF16_TINY) for g in seen])
    np.testing.assert_allclose(w.trace.matrix("grad_underflow"), want, rtol=1e-6)
