"""Activations are recognised by class name (torch, Hugging Face, timm), by their response to
a probe, and as functional calls found by torch.fx; unrecognised layers are listed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from recording_helpers import record_sgd
from torch import nn

import gradwatch as gw
from gradwatch._activations import EQUIVALENT, KINDS, kind_of, torch_equivalent
from gradwatch.recording.recognise import probe, recognise


class ScaledTanh(nn.Module):
    """A user's own tanh: not in any table."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)


class Swishy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class Noisy(nn.Module):
    """Random and not elementwise-deterministic: must not be recognised, nor move the RNG."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.randn_like(x)


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(x))
        h = torch.tanh(self.fc2(h).view(-1, 8))
        return self.head(h)


def test_third_party_classes_map_to_torch_classes_with_their_kind() -> None:
    """Every third-party name maps to a torch class of the table (or Identity), and shares
    its kind: HF's GELUActivation is a GELU, timm's Swish a SiLU."""
    for cls, like in EQUIVALENT.items():
        assert like in KINDS or like == "Identity", cls
    assert torch_equivalent("NewGELUActivation") == "GELU"
    assert kind_of("GELUActivation") == kind_of("GELU") == "relu_like"
    assert kind_of("Swish") == kind_of("SiLU")
    assert kind_of("LinearActivation") == "other"
    assert kind_of("Linear") is None


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (ScaledTanh(), "Tanh"),
        (Swishy(), "SiLU"),
        (nn.GELU(approximate="tanh"), "GELU"),
        (nn.Softplus(), "Softplus"),
        (nn.Softmax(dim=-1), None),
        (nn.Identity(), None),
        (Noisy(), None),
    ],
)
def test_probe_recognises_elementwise_functions_only(
    module: nn.Module, expected: str | None
) -> None:
    """The probe names the reference function an elementwise module computes; softmax (not
    elementwise), the identity and random modules are not activations."""
    assert probe(module) == expected


def test_probe_leaves_the_random_stream_alone() -> None:
    """Recognising a model's modules draws nothing from torch's random stream."""
    model = nn.Sequential(nn.Linear(4, 4), Noisy(), ScaledTanh())
    torch.manual_seed(3)
    recognise(model, {"0"})
    after = torch.rand(3)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(3))


def test_a_probed_tanh_gets_saturation_statistics_like_torch_tanh() -> None:
    """A user's own tanh module is recorded as ScaledTanh computing Tanh (source "probe"),
    and its saturated fraction equals the reference |tanh| > 0.97 on the same batch."""
    model = nn.Sequential(nn.Linear(4, 16), ScaledTanh(), nn.Linear(16, 2))
    with torch.no_grad():
        model[0].weight.mul_(5.0)
    x = torch.randn(64, 4)
    with torch.no_grad():  # the reference, with the weights the first forward uses
        expected = (torch.tanh(model[0](x)).abs() > 0.97).float().mean().item()
    assert 0.1 < expected < 0.9
    trace = record_sgd(model, x, steps=1)
    first = trace.layers[0]
    assert (first.activation, first.activation_like, first.activation_source) == (
        "ScaledTanh",
        "Tanh",
        "probe",
    )
    assert trace.matrix("act_saturated")[0, 0] == pytest.approx(expected, rel=1e-6)
    assert trace.meta["activations"]["probed"]["ScaledTanh"] == "Tanh"


def test_functional_activations_are_found_with_fx() -> None:
    """F.relu(fc1(x)) and torch.tanh(fc2(x).view(...)) are found by torch.fx; the head, with
    no activation after it, is listed as unrecognised; the functional activations get the
    statistics of their outputs, dead and saturated fractions included."""
    model = Functional()
    with torch.no_grad():
        model.fc2.weight.mul_(8.0)
        model.fc1.weight.mul_(4.0)
    x = torch.randn(32, 4)
    with torch.no_grad():  # the reference, with the weights the first forward uses
        h1 = torch.relu(model.fc1(x))
        h2 = torch.tanh(model.fc2(h1))
    trace = record_sgd(model, x, steps=1)
    np.testing.assert_allclose(
        trace.matrix("act_mean")[0, :2], [h1.mean().item(), h2.mean().item()], rtol=1e-5
    )
    dead = (h1.amax(dim=0) <= 0).float().mean().item()
    assert trace.matrix("act_dead")[0, 0] == pytest.approx(dead, abs=1e-7)
    sat = (h2.abs() > 0.97).float().mean().item()
    assert sat > 0 and trace.matrix("act_saturated")[0, 1] == pytest.approx(sat, rel=1e-6)
    layers = {layer.name: layer for layer in trace.layers}
    assert (layers["fc1"].activation, layers["fc1"].activation_like) == ("relu", "ReLU")
    assert (layers["fc2"].activation, layers["fc2"].activation_source) == ("tanh", "functional")
    acts = trace.meta["activations"]
    assert acts["fx"] == "ok"
    assert acts["functional"] == {"fc1": "relu", "fc2": "tanh"}
    assert acts["unrecognised"] == ["head"]


class _Stateful(nn.Module):
    """Counts its forwards and builds a scale lazily on the first one (Python state that
    tracing would otherwise leave behind: a count one too high, a proxy for the scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.calls = 0
        self.scale: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.scale is None:
            self.scale = torch.ones_like(x[0]) * 0.5  # from the input: a proxy under fx
        return F.relu(self.fc(x)) * self.scale


def test_tracing_for_functional_activations_leaves_the_modules_python_state_alone() -> None:
    """The fx trace runs forward's Python: its assignments are put back, so the model counts
    only the real forwards and builds its lazy scale from a real tensor."""
    model = _Stateful()
    trace = record_sgd(model, torch.randn(8, 4), steps=3)
    assert trace.meta["activations"]["functional"] == {"fc": "relu"}  # the trace did run
    assert model.calls == 3 and isinstance(model.scale, torch.Tensor)
    assert not isinstance(model.scale, torch.fx.Proxy)


def test_hugging_face_gelu_is_recognised_and_untraceable_models_say_so() -> None:
    """BERT's intermediate dense layers get GELUActivation (computing GELU); BERT does not
    trace with torch.fx and the metadata says why."""
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    cfg = transformers.BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    model = transformers.BertForSequenceClassification(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    batch = {"input_ids": torch.randint(0, 64, (2, 16)), "labels": torch.tensor([0, 1])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gw.watch(model, opt) as w:
            loss = model(**batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    layers = {layer.name: layer for layer in w.trace.layers}
    for k in range(2):
        dense = layers[f"bert.encoder.layer.{k}.intermediate.dense"]
        assert (dense.activation, dense.activation_like, dense.activation_source) == (
            "GELUActivation",
            "GELU",
            "class",
        )
    acts = w.trace.meta["activations"]
    assert acts["fx"].startswith("failed: ")
    assert "bert.encoder.layer.0.intermediate.dense" not in acts["unrecognised"]
    assert "classifier" in acts["unrecognised"]
    assert not np.isnan(w.trace.matrix("act_mean")).all()


class _AdapterBlock(nn.Module):
    """A trainable adapter beside a frozen projection, then a frozen gate and its activation
    module (as LoRA leaves a Llama MLP); and a trainable layer with a dropout before its
    activation."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen_proj, self.adapter = nn.Linear(8, 8), nn.Linear(8, 8)
        self.norm, self.frozen_gate = nn.LayerNorm(8), nn.Linear(8, 8)
        self.act = nn.SiLU()
        self.fc, self.drop, self.relu = nn.Linear(8, 8), nn.Dropout(0.1), nn.ReLU()
        for m in (self.frozen_proj, self.norm, self.frozen_gate):
            m.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.frozen_proj(x) + 0.5 * self.adapter(x)
        h = h + self.act(self.frozen_gate(self.norm(torch.tanh(h * 2.0) - 1.0)))
        return self.relu(self.drop(self.fc(h)))


def test_an_activation_after_frozen_modules_is_not_claimed_by_the_last_trainable_layer() -> None:
    """The SiLU computes on the frozen gate's output, many autograd nodes from the adapter's:
    it is not the adapter's activation (its statistics would be the gate's), at the ordering
    step or after; the ReLU behind a dropout is the trainable fc's."""
    torch.manual_seed(0)
    model = _AdapterBlock()
    trace = record_sgd(model, torch.randn(16, 8), steps=3)
    acts = {layer.name: layer.activation for layer in trace.layers}
    assert acts == {"adapter": None, "fc": "ReLU"}
    assert np.isfinite(trace.matrix("act_dead")[:, 1]).all()
    assert np.isnan(trace.matrix("act_dead")[:, 0]).all()


class _LateBranch(nn.Module):
    """``late`` and its ReLU run only once ``use_late`` is set (an expert that got no token
    at the first step)."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.late, self.relu = nn.Linear(8, 8), nn.Linear(8, 8), nn.ReLU()
        self.use_late = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        return h + self.relu(self.late(h)) if self.use_late else h


def test_a_layer_first_run_after_the_ordering_step_still_gets_its_activation() -> None:
    """Only the pairs refused at the ordering step stay refused: ``late``'s ReLU, first seen
    at step 1, gives it dead-unit statistics on the sampled steps after."""
    torch.manual_seed(0)
    model = _LateBranch()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(16, 8)
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for step in range(3):
            model.use_late = step > 0
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    late = [layer.name for layer in w.trace.layers].index("late")
    dead = w.trace.matrix("act_dead")[:, late]
    assert np.isnan(dead[0]) and np.isfinite(dead[1:]).all()
