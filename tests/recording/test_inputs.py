"""The scale of what the model is fed, read once at its first training forward and compared
with the same numbers computed directly (float64)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import gradwatch as gw


class KeywordModel(nn.Module):
    """Called as HF vision models are: integer ids and a float ``pixel_values`` keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 3)

    def forward(self, ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(pixel_values.flatten(1)) + ids[:, :1].float()
        return out


def _train(model: nn.Module, inputs: list[Any], evaluate_first: bool = False) -> gw.Trace:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    if evaluate_first:  # a validation pass before training, under no_grad
        with torch.no_grad():
            model.eval()
            model(*inputs[0][0], **inputs[0][1])
            model.train()
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for args, kwargs in inputs:
            loss = model(*args, **kwargs).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    assert not model._forward_pre_hooks  # removed after the first training forward
    return w.trace


def test_the_first_training_input_s_rms_and_mean_are_recorded() -> None:
    """Positional: the first forward's input (a validation pass before it ignored), its RMS
    and mean as float64 computes them; the later batches are not read."""
    torch.manual_seed(0)
    first = torch.randn(16, 8) * 7 + 3
    batches = [((first,), {}), ((torch.randn(16, 8),), {})]
    evaluated = [((torch.randn(16, 8) * 100,), {}), *batches]
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    seen = _train(model, batches)
    ref = first.double()
    assert seen.meta["model_input"] == {
        "source": "arg0",
        "shape": [16, 8],
        "rms": pytest.approx(float(ref.square().mean().sqrt()), rel=1e-6),
        "mean": pytest.approx(float(ref.mean()), rel=1e-6),
    }
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    after_eval = _train(model, evaluated[1:], evaluate_first=True)
    assert after_eval.meta["model_input"]["rms"] == pytest.approx(seen.meta["model_input"]["rms"])


def test_integer_inputs_are_skipped_for_a_float_keyword() -> None:
    pixels = torch.rand(4, 3, 2, 2) * 255
    ids = torch.randint(0, 10, (4, 5))
    trace = _train(KeywordModel(), [((ids,), {"pixel_values": pixels})] * 2)
    assert trace.meta["model_input"]["source"] == "pixel_values"
    assert trace.meta["model_input"]["rms"] == pytest.approx(
        float(pixels.double().square().mean().sqrt()), rel=1e-6
    )


def test_a_model_fed_only_integers_records_nothing_and_leaves_no_hook() -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 1))
    ids = torch.randint(0, 10, (8, 3))
    trace = _train(model, [((ids,), {})] * 2)
    assert "model_input" not in trace.meta
    unused = nn.Linear(2, 1)
    with gw.watch(unused, torch.optim.SGD(unused.parameters(), lr=0.1), overhead=None):
        assert unused._forward_pre_hooks  # armed until the first training forward ...
    assert not unused._forward_pre_hooks  # ... or the close


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_inputs_of_every_floating_dtype_are_read_as_they_are(dtype: torch.dtype) -> None:
    """float64 (reduced in float64: a float32 accumulation of it raised inside the model's
    forward), bfloat16 and float16 (accumulated in float32, no float32 copy)."""
    x = (torch.randn(16, 8, dtype=torch.float64) * 7 + 3).to(dtype)
    weights = torch.float64 if dtype == torch.float64 else torch.float32
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1)).to(weights)

    class Cast(nn.Module):
        """Casts its input to the weights' dtype (the model is fed ``x`` as it is)."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.inner(v.to(next(self.inner.parameters()).dtype))
            return out

    trace = _train(Cast(model), [((x,), {})] * 2)
    ref = x.double()
    assert trace.meta["model_input"]["rms"] == pytest.approx(
        float(ref.square().mean().sqrt()), rel=1e-2 if dtype != torch.float64 else 1e-9
    )


def test_inputs_it_cannot_reduce_are_skipped_not_raised_on() -> None:
    """A sparse float input is skipped for the next readable one (dense, float): the
    model's forward never fails because of the probe."""

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 1)

        def forward(self, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.fc(x) + mask.to_dense().sum()
            return out

    sparse = torch.eye(4).to_sparse()
    x = torch.full((8, 4), 2.0)
    trace = _train(Two(), [((sparse, x), {})] * 2)
    assert trace.meta["model_input"]["source"] == "arg1"
    assert trace.meta["model_input"]["rms"] == pytest.approx(2.0)
