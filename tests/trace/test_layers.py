"""The layer table: new fields round-trip, old tables still load, depth columns skip norms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import gradwatch as gw
from gradwatch.trace import LayerInfo, Trace
from gradwatch.trace.layers import role_of


def test_layer_info_round_trips_every_field() -> None:
    """to_json / from_json keep role, attention, branch and the activation's source."""
    info = LayerInfo(
        name="h.0.attn.c_attn",
        type="Conv1D",
        depth=3,
        num_params=10,
        shapes={"weight": [2, 5]},
        activation="NewGELUActivation",
        role="weight",
        attention="h.0.attn",
        branch="h.0.attn",
        activation_like="GELU",
        activation_source="class",
        out_numel=4096,
    )
    assert LayerInfo.from_json(json.loads(json.dumps(info.to_json()))) == info


def test_a_layer_table_written_before_roles_loads_with_inferred_ones() -> None:
    """An old meta.json entry (no role, branch, activation_like) gets roles from the class
    name and the activation's torch class from the table; branch stays None."""
    old = [
        {"name": "", "type": "ViTForImageClassification", "depth": 0, "num_params": 8},
        {"name": "ln", "type": "LlamaRMSNorm", "depth": 1, "num_params": 8},
        {"name": "emb", "type": "Embedding", "depth": 2, "num_params": 8},
        {"name": "bn", "type": "BatchNorm2d", "depth": 3, "num_params": 8},
        {"name": "fc", "type": "Linear", "depth": 4, "num_params": 8, "activation": "GELU"},
    ]
    infos = [LayerInfo.from_json(d) for d in old]
    assert [i.role for i in infos] == ["root", "norm", "embedding", "norm", "weight"]
    assert infos[4].activation_like == "GELU" and infos[4].activation_source == "class"
    assert all(i.branch is None and i.attention is None for i in infos)
    assert all(i.out_numel is None for i in infos)


def test_role_of_recognises_third_party_norms_by_name() -> None:
    """T5LayerNorm, LlamaRMSNorm, timm's LayerNorm2d and GroupNorm are norms; Linear is not."""
    for cls in ("T5LayerNorm", "LlamaRMSNorm", "LayerNorm2d", "GroupNorm", "InstanceNorm3d"):
        assert role_of(cls, "x") == "norm", cls
    assert role_of("Linear", "x") == "weight"
    assert role_of("ViTEmbeddings", "vit.embeddings") == "embedding"


def test_path_columns_skip_norms_embeddings_and_the_root() -> None:
    """path_columns keeps weight and attention layers; main_path_only drops branch members;
    branch_columns groups the branch members by branch."""
    layers = [
        LayerInfo("", "Net", 0, 4, role="root"),
        LayerInfo("emb", "Embedding", 1, 4, role="embedding"),
        LayerInfo("b0.ln", "LayerNorm", 2, 4, role="norm", branch="b0"),
        LayerInfo("b0.attn", "MultiheadAttention", 3, 4, role="attention", branch="b0"),
        LayerInfo("b0.fc", "Linear", 4, 4, branch="b0"),
        LayerInfo("act", "PReLU", 5, 1, role="activation"),
        LayerInfo("head", "Linear", 6, 4),
    ]
    t = Trace.from_arrays(layers, [0], {})
    assert t.path_columns() == [3, 4, 6]
    assert t.path_columns(main_path_only=True) == [6]
    assert t.branch_columns() == {"b0": [3, 4]}


def test_a_recorded_run_dir_keeps_the_structure(tmp_path: Path) -> None:
    """Roles, branches and the activation's source survive meta.json and gw.load."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(4)
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.relu(self.fc(self.norm(x)))

    model = nn.Sequential(nn.Linear(3, 4), Block(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt, run_dir=tmp_path / "run") as w:
        model(torch.randn(5, 3)).pow(2).mean().backward()
        opt.step()
    loaded = gw.load(tmp_path / "run")
    assert loaded.layers == w.trace.layers
    by_name = {layer.name: layer for layer in loaded.layers}
    assert by_name["1.norm"].role == "norm" and by_name["1.norm"].branch == "1"
    assert by_name["1.fc"].activation == "relu"
    assert by_name["1.fc"].activation_source == "functional"
    assert loaded.path_columns(main_path_only=True) == [0, 3]


def test_hand_built_layer_gets_the_recorded_role_and_activation_class() -> None:
    """A LayerInfo built without role/activation_like gets them from its class names."""
    bn = LayerInfo("bn", "BatchNorm1d", 1, 8)
    fc = LayerInfo("fc", "Linear", 0, 8, activation="NewGELUActivation")
    assert bn.role == "norm" and not bn.on_path
    assert fc.role == "weight" and fc.activation_like == "GELU"
    assert LayerInfo("x", "Linear", 0, 1, role="attention").role == "attention"


def test_grad_ratio_ends_are_path_layers() -> None:
    """The first/last gradient ratio never compares a norm or embedding layer."""
    infos = [
        LayerInfo("emb", "Embedding", 0, 8),
        LayerInfo("fc0", "Linear", 1, 8),
        LayerInfo("fc1", "Linear", 2, 8),
        LayerInfo("ln", "LayerNorm", 3, 8),
    ]
    t = Trace.from_arrays(infos, [0], {"grad_rms": [[1e-9, 1e-3, 1e-1, 1e5]]})
    r = t.grad_ratio("last")
    assert (r.first, r.last) == ("fc0", "fc1") and abs(r.value - 1e-2) < 1e-12


def test_each_layer_s_output_size_is_recorded(tmp_path: Path) -> None:
    """out_numel is the number of elements of each layer's output in the first forward (the
    whole batch), as forward hooks see it, and survives the run directory; without
    activation hooks it is not seen."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10),
    )  # fmt: skip
    seen: dict[str, int] = {}

    def keep(name: str) -> object:
        def hook(module: nn.Module, args: object, out: torch.Tensor) -> None:
            seen.setdefault(name, out.numel())

        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in model.named_modules() if n]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(5, 3, 16, 16)
    with gw.watch(model, opt, tmp_path / "run", overhead=None, on_finding=lambda f: None) as w:
        for _ in range(3):
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
    for h in handles:
        h.remove()
    want = {"0": 5 * 8 * 8 * 8, "1": 5 * 8 * 8 * 8, "3": 5 * 16 * 4 * 4, "6": 5 * 10}
    assert {n: seen[n] for n in want} == want
    assert {layer.name: layer.out_numel for layer in w.trace.layers} == want
    assert {layer.name: layer.out_numel for layer in gw.load(tmp_path / "run").layers} == want
    with gw.watch(model, opt, activations=False, overhead=None, on_finding=lambda f: None) as w2:
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    assert all(layer.out_numel is None for layer in w2.trace.layers)


class _SharedAndCheckpointed(nn.Module):
    """``shared`` runs twice per forward; ``block`` is checkpointed (its forward hooks run
    again in the backward pass, for the recompute)."""

    def __init__(self, reentrant: bool | None) -> None:
        super().__init__()
        self.first, self.block, self.shared = nn.Linear(8, 8), nn.Linear(8, 6), nn.Linear(6, 6)
        self.reentrant = reentrant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        if self.reentrant is None:
            h = torch.tanh(self.block(h))
        else:
            h = checkpoint(lambda t: torch.tanh(self.block(t)), h, use_reentrant=self.reentrant)
        return self.shared(torch.relu(self.shared(h)))


@pytest.mark.parametrize("reentrant", [None, False, True])
def test_output_size_counts_every_call_that_gets_a_gradient(reentrant: bool | None) -> None:
    """out_numel counts the elements out_grad_norm sums over: both calls of a module run
    twice per forward, and a checkpointed layer's output once (not again for its recompute),
    with or without checkpointing alike."""
    torch.manual_seed(0)
    model = _SharedAndCheckpointed(reentrant)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(4, 8)).square().sum().backward()
            opt.step()
    sizes = {layer.name: layer.out_numel for layer in w.trace.layers}
    assert sizes == {"first": 4 * 8, "block": 4 * 6, "shared": 2 * 4 * 6}
