"""The layer table records the structure it sees: roles, attention, residual branches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recording_helpers import record_sgd
from torch import nn

import gradwatch as gw
from gradwatch.trace import LayerInfo, Trace

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


class PreLNBlock(nn.Module):
    """x + fc2(relu(fc1(ln(x)))): a pre-LN residual MLP block."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 2 * d)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(2 * d, d)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.fc2(self.act(self.fc1(self.ln(x)))))


class PreLNMLP(nn.Module):
    """Input projection, residual blocks, a final norm and a head; a root-owned token."""

    def __init__(self, blocks: int = 3, d: int = 8) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(d))
        self.inp = nn.Linear(4, d)
        self.blocks = nn.Sequential(*[PreLNBlock(d) for _ in range(blocks)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(self.inp(x) + self.cls_token)))


class BasicBlock(nn.Module):
    """torchvision's BasicBlock forward, copied: the shortcut runs after the main branch."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    """Stem, one identity block, one block with a projection shortcut, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 16, 2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(x.mean(dim=(2, 3)))


def _by_name(trace: Trace) -> dict[str, LayerInfo]:
    return {layer.name: layer for layer in trace.layers}


def _gpt2() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32)
    ids = torch.randint(0, 64, (2, 16))
    return transformers.GPT2LMHeadModel(cfg), {"input_ids": ids, "labels": ids}


def _bert() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    cfg = transformers.BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    batch = {"input_ids": torch.randint(0, 64, (2, 16)), "labels": torch.tensor([0, 1])}
    return transformers.BertForSequenceClassification(cfg), batch


def _hf_resnet() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    cfg = transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=10
    )
    batch = {"pixel_values": torch.randn(2, 3, 32, 32), "labels": torch.tensor([0, 1])}
    return transformers.ResNetForImageClassification(cfg), batch


def test_pre_ln_residual_mlp_branches_roles_and_root_parameter() -> None:
    """Each block's layers sit in that block's branch; the trunk layers in none; the root's
    own parameter is role "root" and norms are "norm", both out of the depth columns."""
    trace = record_sgd(PreLNMLP(), torch.randn(16, 4))
    layers = _by_name(trace)
    for b in range(3):
        for part in ("ln", "fc1", "fc2"):
            assert layers[f"blocks.{b}.{part}"].branch == f"blocks.{b}"
    for trunk in ("", "inp", "norm", "head"):
        assert layers[trunk].branch is None
    assert layers[""].role == "root" and layers[""].display_name == "(root)"
    assert layers["norm"].role == "norm" and layers["blocks.0.ln"].role == "norm"
    assert layers["inp"].role == "weight"
    names = trace.layer_names
    assert [names[c] for c in trace.path_columns(main_path_only=True)] == ["inp", "head"]
    path = [names[c] for c in trace.path_columns()]
    assert "" not in path and "norm" not in path and "blocks.1.fc2" in path
    assert trace.branch_columns()["blocks.2"] == [
        names.index("blocks.2.fc1"),
        names.index("blocks.2.fc2"),
    ]
    branches = trace.meta["structure"]["residual_branches"]
    assert sorted(b["name"] for b in branches) == ["blocks.0", "blocks.1", "blocks.2"]


def test_plain_mlp_has_no_residual_branch() -> None:
    """A plain MLP has no residual branch: every weight layer is on the main path."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    trace = record_sgd(model, torch.randn(16, 4))
    assert all(layer.branch is None for layer in trace.layers)
    assert trace.meta["structure"]["residual_branches"] == []
    assert trace.path_columns(main_path_only=True) == [0, 1, 2]


def test_gpt2_attention_and_mlp_are_residual_branches() -> None:
    """GPT-2 (pre-LN): ln_1 + attention and ln_2 + MLP of each block are branches named by
    the module whose output is added; embeddings and the final norm are on the trunk."""
    trace = record_sgd(*_gpt2())
    layers = _by_name(trace)
    for b in range(2):
        h = f"transformer.h.{b}"
        for name in (f"{h}.ln_1", f"{h}.attn.c_attn", f"{h}.attn.c_proj"):
            assert layers[name].branch == f"{h}.attn"
        for name in (f"{h}.ln_2", f"{h}.mlp.c_fc", f"{h}.mlp.c_proj"):
            assert layers[name].branch == f"{h}.mlp"
        assert layers[f"{h}.attn.c_attn"].attention == f"{h}.attn"
        assert layers[f"{h}.mlp.c_fc"].attention is None
        assert layers[f"{h}.attn.c_attn"].role == "weight"
    assert layers["transformer.wte"].role == "embedding"
    assert layers["transformer.wpe"].role == "embedding"
    assert layers["transformer.ln_f"].branch is None
    assert trace.meta["structure"]["cost_ms"] > 0


def test_bert_attention_and_feed_forward_are_residual_branches() -> None:
    """BERT (post-LN): q/k/v/out are one branch per layer, the feed-forward another; the
    LayerNorms after each addition are on the trunk."""
    trace = record_sgd(*_bert())
    layers = _by_name(trace)
    enc = "bert.encoder.layer.0"
    for part in ("self.query", "self.key", "self.value", "output.dense"):
        assert layers[f"{enc}.attention.{part}"].branch == f"{enc}.attention"
    assert layers[f"{enc}.intermediate.dense"].branch == enc
    assert layers[f"{enc}.output.dense"].branch == enc
    assert layers[f"{enc}.output.LayerNorm"].branch is None
    assert layers[f"{enc}.attention.output.LayerNorm"].role == "norm"
    assert layers["bert.embeddings.word_embeddings"].role == "embedding"
    assert layers[f"{enc}.attention.self.query"].attention == f"{enc}.attention.self"
    names = [trace.layer_names[c] for c in trace.path_columns(main_path_only=True)]
    assert names == ["bert.pooler.dense", "classifier"]


def test_hf_resnet_projection_shortcut_is_its_own_branch() -> None:
    """HF ResNet: the main branch of a block with a projection shortcut and the shortcut are
    two branches; the ReLU after the addition is credited to the main branch's last layer."""
    trace = record_sgd(*_hf_resnet())
    layers = _by_name(trace)
    blk = "resnet.encoder.stages.1.layers.0"
    assert layers[f"{blk}.layer.0.convolution"].branch == f"{blk}.layer"
    assert layers[f"{blk}.shortcut.convolution"].branch == f"{blk}.shortcut"
    assert layers[f"{blk}.shortcut.normalization"].activation is None
    assert layers[f"{blk}.layer.2.normalization"].activation == "ReLU"
    shortcut = [b for b in trace.meta["structure"]["residual_branches"] if b["shortcut"]]
    assert [b["name"] for b in shortcut] == [f"{blk}.shortcut"]
    # Every layer has activation statistics at every sampled step.
    steps, act_mean = trace.measured("act_mean")
    assert len(steps) == 2 and not np.isnan(act_mean).any()


def test_torchvision_style_resnet_credits_the_final_relu_to_the_main_branch() -> None:
    """torchvision's block runs the shortcut after the main branch and adds in place: the
    ReLU after the addition belongs to bn2, not downsample.1, and bn2 (whose own output the
    in-place addition overwrites) still gets activation statistics."""
    trace = record_sgd(TinyResNet(), torch.randn(4, 3, 8, 8), steps=3)
    layers = _by_name(trace)
    assert layers["layer2.bn2"].activation == "ReLU"
    assert layers["layer2.downsample.1"].activation is None
    assert layers["layer1.bn2"].activation == "ReLU"
    assert layers["layer2.downsample.0"].branch == "layer2.downsample"
    assert layers["layer2.conv1"].branch == "layer2"
    steps, act_mean = trace.measured("act_mean")
    assert len(steps) == 3 and not np.isnan(act_mean).any()


def test_two_heads_added_on_one_trunk_are_parallel_branches() -> None:
    """Two heads added on one trunk: both operands are transformed, so each head is a branch
    of the fork (as a projection shortcut is), and the trunk stays on the main path."""

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk = nn.Linear(4, 8)
            self.a = nn.Linear(8, 1)
            self.b = nn.Linear(8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.trunk(x)
            return self.a(h) + self.b(h)

    trace = record_sgd(TwoHeads(), torch.randn(8, 4))
    layers = _by_name(trace)
    assert layers["trunk"].branch is None
    assert {layers["a"].branch, layers["b"].branch} == {"a", "b"}


def test_structure_costs_little_and_runs_once() -> None:
    """Finding the structure of GPT-2 (2 blocks) takes well under 100 ms, and the hooks that
    find it are gone after the first step."""
    model, batch = _gpt2()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gw.watch(model, opt) as w:
        for _ in range(2):
            loss = model(**batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        hooked = sum(len(m._forward_hooks) for m in model.modules())
        n_layers = len(w.trace.layers)
    assert hooked <= 2 * n_layers + 10  # the sampler's hooks only, not one per module
    assert w.trace.meta["structure"]["cost_ms"] < 100


def test_hf_vit_tokens_are_embeddings_and_blocks_are_branches() -> None:
    """HF ViT: the module owning cls_token and position_embeddings is an embedding, the patch
    projection a weight layer, and each block's attention and MLP are residual branches."""
    cfg = transformers.ViTConfig(
        image_size=16,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
    )
    batch = {"pixel_values": torch.randn(2, 3, 16, 16), "labels": torch.tensor([0, 2])}
    trace = record_sgd(transformers.ViTForImageClassification(cfg), batch)
    layers = _by_name(trace)
    assert layers["vit.embeddings"].role == "embedding"
    assert layers["vit.embeddings.patch_embeddings.projection"].role == "weight"
    blk = "vit.layers.0" if "vit.layers.0.mlp.fc1" in layers else "vit.encoder.layer.0"
    fc1 = f"{blk}.mlp.fc1" if f"{blk}.mlp.fc1" in layers else f"{blk}.intermediate.dense"
    query = next(n for n in layers if n.startswith(blk) and ("q_proj" in n or "query" in n))
    assert layers[query].branch is not None and layers[fc1].branch is not None
    assert layers[query].branch != layers[fc1].branch
    assert layers[query].attention is not None
    assert layers[fc1].activation_like == "GELU"
    main = [trace.layer_names[c] for c in trace.path_columns(main_path_only=True)]
    assert main == ["vit.embeddings.patch_embeddings.projection", "classifier"]
    for branch in trace.meta["structure"]["residual_branches"]:
        depths = [layers[n].depth for n in branch["layers"]]
        assert depths == sorted(depths)


def test_two_branches_under_one_module_keep_distinct_names() -> None:
    """Two residual additions inside one module whose branches have no module of their own
    get distinct names (the module's name, then with a #2 suffix)."""

    class TwoResiduals(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.c = nn.Linear(4, 4)
            self.d = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.b(torch.relu(self.a(x)))
            return x + self.d(torch.relu(self.c(x)))

    model = nn.Sequential(nn.Linear(3, 4), TwoResiduals(), nn.Linear(4, 1))
    trace = record_sgd(model, torch.randn(8, 3))
    layers = _by_name(trace)
    first, second = layers["1.a"].branch, layers["1.c"].branch
    assert first is not None and second is not None and first != second
    assert layers["1.b"].branch == first and layers["1.d"].branch == second
    assert {first, second} == {"1", "1#2"}


def test_a_model_without_a_visible_graph_says_so() -> None:
    """When no module output carries a grad_fn (here: a first step whose forward ran without
    gradients reaching any module output), graph_seen is false and no branch is claimed."""
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    with gw.watch(model) as w:
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        w.step()
    assert w.trace.meta["structure"]["graph_seen"] is False
    assert w.trace.meta["structure"]["residual_branches"] == []
    assert all(layer.branch is None for layer in w.trace.layers)
