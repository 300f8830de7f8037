"""Lab models: shapes, parameter counts, structure and initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradwatch.lab.models import (
    CNN,
    MLP,
    CNNConfig,
    MLPConfig,
    RecurrentConfig,
    RecurrentNet,
    Residual,
    TransformerConfig,
    TransformerEncoder,
    build_model,
)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_mlp_parameter_count_matches_closed_form(depth: int) -> None:
    """An MLP has in*w+w + (depth-2)(w*w+w) + w*out+out parameters (depth Linear layers)."""
    d_in, w, d_out = 7, 5, 3
    net = MLP(MLPConfig(depth=depth, width=w), d_in, d_out)
    expected = (
        d_in * d_out + d_out
        if depth == 1
        else (d_in * w + w + (depth - 2) * (w * w + w) + w * d_out + d_out)
    )
    assert _count(net) == expected
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == depth
    assert net(torch.randn(4, d_in)).shape == (4, d_out)


def test_mlp_uses_activation_modules_and_norms() -> None:
    """Every hidden layer is followed by its norm and an activation *module*."""
    net = MLP(MLPConfig(depth=4, width=8, activation="sigmoid", norm="batchnorm"), 3, 2)
    assert sum(isinstance(m, nn.Sigmoid) for m in net.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm1d) for m in net.modules()) == 3
    assert isinstance(net[0], nn.Linear) and isinstance(net[1], nn.BatchNorm1d)


def test_residual_mlp_adds_identity_path() -> None:
    """A residual block's output is x + W act(x) + b (pre-activation), recomputed by hand;
    the residual MLP keeps depth Linear layers and the plain one's parameter count."""
    net = MLP(MLPConfig(depth=4, width=6, residual=True, activation="tanh"), 3, 2)
    plain = MLP(MLPConfig(depth=4, width=6, activation="tanh"), 3, 2)
    blocks = [m for m in net if isinstance(m, Residual)]
    assert len(blocks) == 2  # the first layer changes width and has no skip
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 4
    assert _count(net) == _count(plain)
    x = torch.randn(5, 6)
    act, lin = blocks[0].block[0], blocks[0].block[1]
    assert torch.allclose(blocks[0](x), x + act(x) @ lin.weight.T + lin.bias)
    assert net(torch.randn(5, 3)).shape == (5, 2)


def test_he_init_variance_is_two_over_fan_in() -> None:
    """He init gives Var(W) = 2/fan_in (within 5% on 512x512 weights) and zero biases."""
    net = MLP(MLPConfig(depth=3, width=512, init="he"), 512, 2)
    w = net[2].weight.double()
    assert abs(w.var().item() * 512 / 2 - 1) < 0.05
    assert torch.count_nonzero(net[2].bias) == 0


def test_standard_init_is_glorot_heuristic() -> None:
    """'standard' init is U[-1/sqrt(n), 1/sqrt(n)]: variance 1/(3n), bounded by 1/sqrt(n)."""
    n = 400
    net = MLP(MLPConfig(depth=2, width=300, init="standard"), n, 2)
    w = net[0].weight.double()
    assert w.abs().max() <= 1 / math.sqrt(n)
    assert abs(w.var().item() * 3 * n - 1) < 0.05


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_recurrent_shapes_and_parameter_count(cell: str) -> None:
    """A recurrent net maps (B, T, F) to (B, out) with gates*(h(F+h)+2h) + head parameters."""
    f, h, out = 3, 6, 2
    net = RecurrentNet(RecurrentConfig(cell=cell, hidden=h), f, out)  # type: ignore[arg-type]
    gates = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}[cell]
    assert _count(net) == gates * (h * (f + h) + 2 * h) + h * out + out
    assert net(torch.randn(4, 9, f)).shape == (4, out)


def test_recurrent_readout_is_last_step() -> None:
    """The head reads the recurrent output at the last time step only."""
    net = RecurrentNet(RecurrentConfig(cell="gru", hidden=4), 2, 1)
    x = torch.randn(3, 7, 2)
    out, _ = net.rnn(x)
    assert torch.allclose(net(x), net.head(out[:, -1]))


def test_irnn_identity_init_and_recurrent_scale() -> None:
    """IRNN init sets W_hh = scale * I and zero biases (Le et al., 2015)."""
    net = RecurrentNet(RecurrentConfig(cell="rnn_relu", hidden=5, init="identity",
                                       recurrent_scale=0.5), 2, 1)  # fmt: skip
    assert torch.equal(net.rnn.weight_hh_l0, 0.5 * torch.eye(5))
    assert torch.count_nonzero(net.rnn.bias_hh_l0) == 0


def test_orthogonal_scale_sets_spectral_radius() -> None:
    """Orthogonal W_hh times 3 has every singular value 3 (the exploding regime)."""
    net = RecurrentNet(RecurrentConfig(hidden=8, init="orthogonal", recurrent_scale=3.0), 2, 1)
    s = torch.linalg.svdvals(net.rnn.weight_hh_l0.double())
    assert torch.allclose(s, torch.full_like(s, 3.0), atol=1e-5)


def test_lstm_forget_bias() -> None:
    """The LSTM's forget-gate bias (second quarter of bias_ih) is the configured value."""
    net = RecurrentNet(RecurrentConfig(cell="lstm", hidden=4, forget_bias=2.0), 2, 1)
    assert torch.equal(net.rnn.bias_ih_l0[4:8], torch.full((4,), 2.0))
    assert torch.count_nonzero(net.rnn.bias_hh_l0[4:8]) == 0


@pytest.mark.parametrize("ln", ["pre", "post"])
def test_transformer_shapes(ln: str) -> None:
    """Both LayerNorm placements map (B, T, F) to (B, out)."""
    cfg = TransformerConfig(d_model=8, heads=2, layers=2, ff=16, ln=ln)  # type: ignore[arg-type]
    net = TransformerEncoder(cfg, in_features=3, out_features=4)
    assert net(torch.randn(2, 5, 3)).shape == (2, 4)


def test_post_ln_block_output_is_normalised() -> None:
    """A post-LN block ends in LayerNorm: every token has mean 0 and variance 1."""
    cfg = TransformerConfig(d_model=8, heads=2, layers=1, ff=16, ln="post")
    block = TransformerEncoder(cfg, 3, 2).blocks[0]
    y = block(torch.randn(2, 5, 8)).double()
    assert torch.allclose(y.mean(-1), torch.zeros(2, 5, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(y.var(-1, unbiased=False), torch.ones(2, 5, dtype=torch.float64),
                          atol=1e-3)  # fmt: skip


def test_transformer_rejects_bad_heads() -> None:
    """d_model not divisible by heads is an error naming both."""
    with pytest.raises(ValueError, match=r"d_model=10.*heads=3"):
        TransformerEncoder(TransformerConfig(d_model=10, heads=3), 2, 2)


def test_cnn_shapes_and_parameter_count() -> None:
    """A CNN on (B, 1, 8, 8) images gives (B, 10) with 9(c_in c + ...) parameters."""
    c = 4
    net = CNN(CNNConfig(depth=2, channels=c), in_channels=1, out_features=10)
    expected = (9 * 1 * c + c) + (9 * c * c + c) + (c * 10 + 10)
    assert _count(net) == expected
    assert net(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_build_model_dispatches_on_config_type() -> None:
    """build_model returns the class its config names and rejects other objects."""
    assert isinstance(build_model(MLPConfig(depth=2), 3, 1), MLP)
    assert isinstance(build_model(CNNConfig(depth=1), 1, 2), CNN)
    with pytest.raises(TypeError, match="not a lab model config"):
        build_model("mlp", 3, 1)  # type: ignore[arg-type]
