"""Initialisations: variances match their theory; failures restore the model exactly."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from remedies_helpers import make_mlp, same_state, snapshot
from torch import nn

from gradwatch.remedies import (
    INIT_SCHEMES,
    UnsupportedModelError,
    activation_gain,
    following_activations,
    init_he_,
    init_identity_,
    init_layer_,
    init_lecun_,
    init_lsuv_,
    init_orthogonal_,
    init_xavier_,
)

FAN_IN, FAN_OUT = 400, 300  # 120k weights: the sample variance is within ~0.5% (1 sigma)


def _var(w: torch.Tensor) -> float:
    return float(w.detach().double().var())


def _net(act: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Linear(FAN_IN, FAN_OUT), act, nn.Linear(FAN_OUT, 10))


@pytest.mark.parametrize(
    ("act", "gain2"),
    [
        (nn.ReLU(), 2.0),
        (nn.Tanh(), 25.0 / 9.0),
        (nn.Sigmoid(), 1.0),
        (nn.LeakyReLU(0.2), 2.0 / (1 + 0.04)),
        (nn.SELU(), 1.0),
    ],
)
def test_he_variance_uses_the_gain_of_the_following_activation(
    act: nn.Module, gain2: float
) -> None:
    """He: Var(W) = gain^2 / fan_in for the layer before ``act``, 1 / fan_in for the output."""
    model = init_he_(_net(act))
    assert _var(model[0].weight) == pytest.approx(gain2 / FAN_IN, rel=0.03)
    assert _var(model[2].weight) == pytest.approx(1.0 / FAN_OUT, rel=0.1)
    assert torch.count_nonzero(model[0].bias) == 0


def test_he_uniform_fan_out_and_forced_nonlinearity() -> None:
    """With nonlinearity='relu', mode='fan_out', uniform: Var(W) = 2 / fan_out everywhere."""
    model = init_he_(_net(nn.Tanh()), nonlinearity="relu", mode="fan_out", distribution="uniform")
    w = model[0].weight
    assert _var(w) == pytest.approx(2.0 / FAN_OUT, rel=0.03)
    assert float(w.detach().abs().max()) <= math.sqrt(3 * 2.0 / FAN_OUT) + 1e-7


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_xavier_variance(distribution: str) -> None:
    """Xavier: Var(W) = 2 / (fan_in + fan_out)."""
    model = init_xavier_(_net(nn.Tanh()), distribution=distribution)  # type: ignore[arg-type]
    assert _var(model[0].weight) == pytest.approx(2.0 / (FAN_IN + FAN_OUT), rel=0.03)


def test_lecun_variance() -> None:
    """LeCun normal: Var(W) = 1 / fan_in, mean 0."""
    w = init_lecun_(_net(nn.SELU()))[0].weight
    assert _var(w) == pytest.approx(1.0 / FAN_IN, rel=0.03)
    assert abs(float(w.detach().double().mean())) < 4 * math.sqrt(1.0 / FAN_IN / w.numel())


def test_orthogonal_rows_are_orthonormal_times_gain() -> None:
    """Orthogonal with gain g: W W^T = g^2 I (fewer rows than columns); 'auto' uses tanh's 5/3."""

    def net() -> nn.Sequential:
        return nn.Sequential(nn.Linear(64, 48), nn.Tanh(), nn.Linear(48, 4))

    eye = torch.eye(48, dtype=torch.float64)
    w = init_orthogonal_(net(), gain=2.0)[0].weight.detach().double()
    torch.testing.assert_close(w @ w.T, 4.0 * eye, atol=1e-5, rtol=0)  # float32 weights
    w = init_orthogonal_(net(), gain="auto")[0].weight.detach().double()
    torch.testing.assert_close(w @ w.T, (5 / 3) ** 2 * eye, atol=1e-5, rtol=0)


def test_recurrent_weights_are_initialised_gate_by_gate() -> None:
    """For an LSTM each of the 4 gate blocks of W_hh is orthogonal on its own."""
    lstm = init_orthogonal_(nn.LSTM(8, 16))
    for block in lstm.weight_hh_l0.detach().double().chunk(4):
        torch.testing.assert_close(
            block @ block.T, torch.eye(16, dtype=torch.float64), atol=1e-5, rtol=0
        )


def test_identity_init_sets_irnn_weights() -> None:
    """IRNN: W_hh = I, biases 0, W_ih ~ N(0, 0.001^2) for every layer of an nn.RNN."""
    rnn = init_identity_(nn.RNN(64, 32, num_layers=2, nonlinearity="relu"))
    for layer in (0, 1):
        assert torch.equal(getattr(rnn, f"weight_hh_l{layer}"), torch.eye(32))
        assert torch.count_nonzero(getattr(rnn, f"bias_hh_l{layer}")) == 0
        assert torch.count_nonzero(getattr(rnn, f"bias_ih_l{layer}")) == 0
    assert math.sqrt(_var(rnn.weight_ih_l0)) == pytest.approx(0.001, rel=0.05)


def test_identity_init_refuses_lstm_naming_it() -> None:
    """An LSTM is not an IRNN: the error names nn.LSTM and what is supported."""
    with pytest.raises(UnsupportedModelError, match=r"LSTM.*Supported: nn\.RNN"):
        init_identity_(nn.Sequential(nn.LSTM(3, 4)))


def test_unsupported_model_error_names_types() -> None:
    """A model with only an Embedding gets an error naming it and the supported layers."""
    with pytest.raises(UnsupportedModelError, match=r"Embedding.*supported: nn\.Linear"):
        init_xavier_(nn.Sequential(nn.Embedding(10, 4)))


def test_following_activation_skips_norms_and_dropout() -> None:
    """The activation after Linear -> BatchNorm -> Dropout -> ReLU is the ReLU."""
    model = nn.Sequential(
        nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(), nn.ReLU(), nn.Linear(4, 1)
    )
    acts = following_activations(model)
    assert isinstance(acts["0"], nn.ReLU) and acts["4"] is None


def test_quadrature_gain_matches_monte_carlo() -> None:
    """For GELU/SiLU (no torch gain) the gain is 1/sqrt(E[f(z)^2]), checked by sampling."""
    z = torch.randn(2_000_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for act in (nn.GELU(), nn.SiLU(), nn.ELU()):
        mc = 1.0 / math.sqrt(float(act(z).pow(2).mean()))
        assert activation_gain(act) == pytest.approx(mc, rel=0.005)
    assert activation_gain(nn.ReLU()) == pytest.approx(math.sqrt(2.0))


def _layer_output_variances(model: nn.Module, x: torch.Tensor) -> list[float]:
    """Variance of each Linear's output on ``x`` (independent of the LSUV code: hooks)."""
    out: list[float] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: out.append(float(o.double().var())))
        for m in model.modules()
        if isinstance(m, nn.Linear)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return out


def test_lsuv_gives_unit_output_variance_per_layer() -> None:
    """After LSUV every Linear output has variance within tol of 1 on the batch."""
    torch.manual_seed(3)
    model = make_mlp(depth=8, width=32, d_in=10)
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.bias, 0.0, 1.0)  # LSUV must zero them
    x = torch.randn(256, 10) * 3.0
    variances_before = _layer_output_variances(model, x)
    init_lsuv_(model, x, tol=0.01)
    variances = _layer_output_variances(model, x)
    assert np.all(np.abs(np.array(variances) - 1.0) < 0.01), variances
    assert not np.all(np.abs(np.array(variances_before) - 1.0) < 0.01)
    assert all(torch.count_nonzero(m.bias) == 0 for m in model if isinstance(m, nn.Linear))


class _Zero(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * 0.0


def test_lsuv_dead_layer_raises_and_restores() -> None:
    """A layer whose output variance is 0 cannot be rescaled: the error names it, and the
    layers already rescaled before it are restored."""
    model = nn.Sequential(nn.Linear(4, 8), _Zero(), nn.Linear(8, 8))
    before = snapshot(model)
    with pytest.raises(ValueError, match="output variance of layer '2'"):
        init_lsuv_(model, torch.randn(64, 4))
    assert same_state(model, before)


def test_lsuv_failure_restores_the_model() -> None:
    """A batch of the wrong shape raises and leaves every parameter bit-identical."""
    model = make_mlp(depth=4)
    before = snapshot(model)
    with pytest.raises(RuntimeError):
        init_lsuv_(model, torch.randn(8, 99))
    assert same_state(model, before)
    with pytest.raises(ValueError, match="variance"):
        init_lsuv_(model, torch.zeros(8, 5))  # constant input: variance 0, cannot rescale
    assert same_state(model, before)


def test_bad_arguments_name_the_argument() -> None:
    """Bad distribution/mode/tol/max_iter raise ValueError naming the argument."""
    m = make_mlp()
    with pytest.raises(ValueError, match="distribution"):
        init_xavier_(m, distribution="gaussian")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        init_he_(m, mode="fan_avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nonlinearity"):
        init_he_(m, nonlinearity="swishy")
    with pytest.raises(ValueError, match="max_iter"):
        init_lsuv_(m, torch.randn(4, 5), max_iter=0)


def test_rnn_uses_its_own_nonlinearity_gain() -> None:
    """He init of nn.RNN(relu) gives Var(W_ih) = 2 / fan_in; an LSTM's gate blocks get 1 / fan_in."""
    rnn = init_he_(nn.RNN(400, 300, nonlinearity="relu"))
    assert _var(rnn.weight_ih_l0) == pytest.approx(2.0 / 400, rel=0.03)
    lstm = init_he_(nn.LSTM(400, 100))
    assert _var(lstm.weight_ih_l0) == pytest.approx(1.0 / 400, rel=0.03)


def test_failure_half_way_restores_every_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """If initialising the third layer raises, the two layers already done are restored."""
    model = make_mlp(depth=5)
    before = snapshot(model)
    calls = {"n": 0}
    real = nn.init.orthogonal_

    def flaky(w: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated failure")
        return real(w, gain=gain)

    monkeypatch.setattr(nn.init, "orthogonal_", flaky)
    with pytest.raises(RuntimeError, match="simulated"):
        init_orthogonal_(model)
    assert calls["n"] == 3 and same_state(model, before)


class _OnePlusRMSNorm(nn.Module):
    """Gemma's RMSNorm: multiplies by 1 + weight, weight starting at 0 (not a torch norm)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * (1 + self.weight)


def _hf_efficientnet_like() -> nn.Sequential:
    """Convs and norms whose gains were drawn from N(0, 0.02) and whose BatchNorm has seen
    batches (HF EfficientNet's init), beside a Gemma-style norm."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.SiLU(), nn.GroupNorm(2, 8),
        nn.Flatten(), nn.LayerNorm(8 * 4 * 4), nn.Linear(128, 16), nn.RMSNorm(16),
        _OnePlusRMSNorm(16),
    )  # fmt: skip
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.RMSNorm)):
                m.weight.normal_(0.0, 0.02)
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
                m.bias.normal_(0.0, 0.02)
        model[-1].weight.normal_(0.0, 0.02)
    model.train()
    model(torch.randn(4, 3, 6, 6))  # BatchNorm's running statistics move
    return model


@pytest.mark.parametrize(
    "init",
    [init_he_, init_xavier_, init_lecun_, init_orthogonal_,
     lambda m: init_lsuv_(m, torch.randn(16, 3, 6, 6))],
    ids=["he", "xavier", "lecun", "orthogonal", "lsuv"],
)  # fmt: skip
def test_inits_put_torchs_norms_back_to_gain_one(init: Callable[[nn.Module], nn.Module]) -> None:
    """Every model-wide init resets torch's norm layers to their own init (gain 1, shift 0,
    fresh running statistics); a norm class of another library keeps its parameters (its
    identity is unknown: Gemma's multiplies by 1 + weight)."""
    model = _hf_efficientnet_like()
    other = model[-1].weight.detach().clone()
    init(model)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.RMSNorm)):
            assert torch.equal(m.weight, torch.ones_like(m.weight)), type(m).__name__
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            assert torch.equal(m.bias, torch.zeros_like(m.bias)), type(m).__name__
    bn = model[1]
    assert torch.equal(bn.running_mean, torch.zeros(8)) and torch.equal(
        bn.running_var, torch.ones(8)
    )
    assert int(bn.num_batches_tracked) == 0
    assert torch.equal(model[-1].weight, other)


def test_a_failed_init_leaves_the_norms_as_they_were(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after the first norms were reset (the GroupNorm's reset raises, after the
    weights and the BatchNorm) restores the whole model exactly, norms and statistics too."""
    model = _hf_efficientnet_like()
    before = snapshot(model)
    bn_stats = model[1].running_var.clone()

    def broken(self: nn.GroupNorm) -> None:
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(nn.GroupNorm, "reset_parameters", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        init_he_(model)
    assert same_state(model, before)
    assert torch.equal(model[1].running_var, bn_stats)


# --- init_layer_: the per-layer schemes the lab builds its models with.


def _reference_init_(layer: nn.Module, scheme: str, activation: str) -> None:
    """The lab's recipe (lab/models/common.py before issue 11), in plain torch.nn.init calls."""
    if scheme == "default":
        return
    weight = layer.weight
    fan_in = weight[0].numel()
    with torch.no_grad():
        if scheme == "standard":
            nn.init.uniform_(weight, -1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))
        elif scheme == "xavier":
            nn.init.xavier_uniform_(weight)
        elif scheme == "he":
            nonlinearity = "leaky_relu" if activation == "leaky_relu" else "relu"
            nn.init.kaiming_normal_(weight, nonlinearity=nonlinearity)
        elif scheme == "lecun":
            nn.init.normal_(weight, 0.0, 1.0 / math.sqrt(fan_in))
        else:
            nn.init.orthogonal_(weight)
        layer.bias.zero_()


@pytest.mark.parametrize("scheme", list(INIT_SCHEMES))
@pytest.mark.parametrize("make", [lambda: nn.Linear(30, 20), lambda: nn.Conv2d(3, 8, 3)])
@pytest.mark.parametrize("activation", ["tanh", "leaky_relu"])
def test_init_layer_draws_the_same_numbers_as_torch_init(
    scheme: str, make: Callable[[], nn.Module], activation: str
) -> None:
    """init_layer_ gives bit for bit what the torch.nn.init recipe gives from the same seed
    (He with the default ReLU gain, whatever the layer's activation, as the lab's models did)."""
    torch.manual_seed(3)
    got, want = make(), make()
    want.load_state_dict(got.state_dict())
    torch.manual_seed(7)
    init_layer_(got, scheme)
    torch.manual_seed(7)
    _reference_init_(want, scheme, activation)
    assert same_state(got, snapshot(want))


def test_init_layer_variances_match_their_theory() -> None:
    """standard: U[-1/sqrt(n), 1/sqrt(n)] (Var 1/(3n)); he: 2/n, and gain^2/n with a forced
    nonlinearity; lecun 1/n; default keeps torch's weights and bias."""
    layer = nn.Linear(FAN_IN, FAN_OUT)
    w = init_layer_(layer, "standard").weight
    assert _var(w) == pytest.approx(1.0 / (3 * FAN_IN), rel=0.03)
    assert float(w.detach().abs().max()) <= 1.0 / math.sqrt(FAN_IN)
    assert torch.count_nonzero(layer.bias) == 0
    assert _var(init_layer_(layer, "he").weight) == pytest.approx(2.0 / FAN_IN, rel=0.03)
    tanh = init_layer_(layer, "he", nonlinearity="tanh").weight
    assert _var(tanh) == pytest.approx(25.0 / 9.0 / FAN_IN, rel=0.03)
    assert _var(init_layer_(layer, "lecun").weight) == pytest.approx(1.0 / FAN_IN, rel=0.03)
    fresh = nn.Linear(4, 3)
    before = snapshot(fresh)
    init_layer_(fresh, "default")
    assert same_state(fresh, before)


def test_init_layer_bad_arguments_name_the_argument() -> None:
    """An unknown scheme or nonlinearity, or a layer without a weight matrix, is refused."""
    with pytest.raises(ValueError, match=r"`scheme`.*'kaiming'"):
        init_layer_(nn.Linear(2, 2), "kaiming")
    with pytest.raises(ValueError, match="nonlinearity"):
        init_layer_(nn.Linear(2, 2), "he", nonlinearity="swishy")
    with pytest.raises(TypeError, match=r"`layer`.*LayerNorm"):
        init_layer_(nn.LayerNorm(2), "xavier")
