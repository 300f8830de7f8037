"""Every recorded statistic equals an independent float64 reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw


def _mlp(act: type[nn.Module] = nn.Tanh, depth: int = 3, width: int = 6) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(4, width), act()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), act()]
    layers.append(nn.Linear(width, 2))
    return nn.Sequential(*layers)


def _between_share(ys: list[torch.Tensor], unit_dim: int = -1) -> float:
    """float64 reference of act_between_inputs over the forwards ``ys``: the squared
    deviations of each unit from its mean over the inputs of its forward, over those from
    the forward's overall mean."""
    between = centred = 0.0
    for y in ys:
        rows = y.double().movedim(unit_dim, -1).reshape(-1, y.shape[unit_dim])
        between += (rows - rows.mean(dim=0)).square().sum().item()
        centred += (rows - rows.mean()).square().sum().item()
    return between / centred


def _linears(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]


def test_gradient_and_weight_statistics_match_float64_reference_on_hand_set_gradients() -> None:
    """grad_norm, grad_rms, grad_max, weight_norm and nonfinite equal a naive float64 loop."""
    model = _mlp()
    layers = _linears(model)
    gen = torch.Generator().manual_seed(1)
    with gw.watch(model, activations=False, sample_every=1) as w:
        for _ in range(3):
            for p in model.parameters():
                p.grad = (
                    torch.randn(p.shape, generator=gen) * 10 ** torch.randint(-6, 2, (1,)).item()
                )
            w.step()
            expected = []
            for layer in layers:
                ps = list(layer.parameters(recurse=False))
                g = torch.cat([p.grad.double().flatten() for p in ps])
                wt = torch.cat([p.detach().double().flatten() for p in ps])
                expected.append(
                    [
                        g.norm().item(),
                        g.norm().item() / math.sqrt(g.numel()),
                        g.abs().max().item(),
                        wt.norm().item(),
                        0.0,
                    ]
                )
            w.expected = [*getattr(w, "expected", []), expected]  # type: ignore[attr-defined]
    trace = w.trace
    exp = np.array(w.expected)  # type: ignore[attr-defined]  # (steps, layers, 5)
    for k, metric in enumerate(["grad_norm", "grad_rms", "grad_max", "weight_norm", "nonfinite"]):
        np.testing.assert_allclose(trace.matrix(metric), exp[:, :, k], rtol=2e-6, atol=0)


def test_max_and_weight_norm_are_measured_on_sampled_steps_only() -> None:
    """With sample_every=3, grad_max/weight_norm exist on steps 0, 3, 6; grad_norm on all."""
    model = _mlp()
    with gw.watch(model, activations=False, sample_every=3, dense_steps=0, overhead=None) as w:
        for _ in range(7):
            for p in model.parameters():
                p.grad = torch.ones_like(p)
            w.step()
    t = w.trace
    for metric in ("grad_max", "weight_norm"):
        steps, _ = t.measured(metric)
        assert steps.tolist() == [0, 3, 6]
    assert np.isfinite(t.matrix("grad_norm")).all()


def test_nonfinite_counts_exactly_the_bad_entries_of_each_layer() -> None:
    """A layer with 3 NaN and 2 inf gradient entries gets nonfinite == 5; others 0."""
    model = _mlp()
    with gw.watch(model, activations=False) as w:
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        g = model[2].weight.grad
        g.view(-1)[:3] = float("nan")
        g.view(-1)[3:5] = float("inf")
        w.step()
    counts = w.trace.matrix("nonfinite")[0]
    np.testing.assert_array_equal(counts, [0.0, 5.0, 0.0])
    assert math.isnan(w.trace.matrix("grad_norm")[0, 1])


def test_parameters_without_gradient_are_missing_not_zero() -> None:
    """A layer whose parameters have no .grad this step is NaN in every gradient metric."""
    model = _mlp()
    with gw.watch(model, activations=False) as w:
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        model[0].weight.grad = None
        model[0].bias.grad = None
        w.step()
    trace = w.trace
    assert np.isnan(trace.matrix("grad_norm")[0, 0])
    assert np.isnan(trace.matrix("grad_rms")[0, 0])
    assert np.isfinite(trace.matrix("grad_norm")[0, 1:]).all()
    assert np.isfinite(trace.matrix("weight_norm")[0]).all()


def test_frozen_layers_are_not_recorded() -> None:
    """Frozen parameters are not layers; the trace has only the trainable ones."""
    model = _mlp()
    for p in model[0].parameters():
        p.requires_grad_(False)
    with gw.watch(model) as w:
        model(torch.randn(5, 4)).sum().backward()
        w.step()
    assert w.trace.layer_names == ["2", "4"]


def test_update_ratio_is_the_real_adam_update() -> None:
    """update_ratio = ||theta_after - theta_before|| / ||theta_before|| per layer, under Adam."""
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    layers = _linears(model)
    x = torch.randn(8, 4)
    expected = []
    with gw.watch(model, opt, sample_every=2, dense_steps=0, overhead=None) as w:
        for step in range(4):
            before = [
                torch.cat([p.detach().double().flatten() for p in m.parameters(recurse=False)])
                for m in layers
            ]
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
            after = [
                torch.cat([p.detach().double().flatten() for p in m.parameters(recurse=False)])
                for m in layers
            ]
            if step % 2 == 0:
                expected.append(
                    [((a - b).norm() / b.norm()).item() for a, b in zip(after, before, strict=True)]
                )
    steps, ratio = w.trace.measured("update_ratio")
    np.testing.assert_array_equal(steps, [0, 2])
    np.testing.assert_allclose(ratio, np.array(expected), rtol=1e-4)
    # Adam's update is ~lr per entry, far from lr * ||g|| for small gradients.
    assert np.all(ratio > 0)


def _one_step_keeping(
    model: nn.Module, x: torch.Tensor, modules: list[nn.Module]
) -> tuple[gw.Trace, dict[nn.Module, torch.Tensor]]:
    """One watched step of ``model(x).pow(2).sum()``; its trace and the outputs of ``modules``
    (gradient retained), taken by forward hooks that are removed again."""
    outs: dict[nn.Module, torch.Tensor] = {}

    def keep(mod: nn.Module, args: object, out: torch.Tensor) -> None:
        out.retain_grad()
        outs[mod] = out

    handles = [m.register_forward_hook(keep) for m in modules]
    try:
        with gw.watch(model) as w:
            model(x).pow(2).sum().backward()
            w.step()
    finally:
        for h in handles:
            h.remove()
    return w.trace, outs


@pytest.mark.parametrize("mode", ["batched", "chunked", "in-hook", "in-hook, per unit"])
@pytest.mark.parametrize("act", [nn.Sigmoid, nn.Tanh, nn.ReLU])
def test_activation_statistics_match_reference(
    act: type[nn.Module], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """act_mean/std/saturated/dead and out_grad_norm equal float64 values from retained tensors:
    when outputs are kept and reduced in batches at the step, when the batches are split into
    chunks of two outputs (and one left alone), and when each is reduced in its hook (over the
    stash budget), as on CPU or per unit as on an accelerator (the activations that saturate
    keep the CPU's reduction, the last layer's output takes the per-unit one)."""
    from gradwatch.recording import activations, stats

    if mode.startswith("in-hook"):
        monkeypatch.setattr(activations, "_STASH_BYTES", 0)
    if mode == "in-hook, per unit":  # the accelerators' one var_mean per output, on CPU
        monkeypatch.setattr(stats, "_per_unit_kernel", lambda t: True)
    if mode == "chunked":
        monkeypatch.setattr(activations, "STACK_BYTES", 2 * 32 * 16 * 4)
    torch.manual_seed(3)
    model = _mlp(act, depth=4, width=16)
    with torch.no_grad():
        model[0].bias.fill_(-3.0 if act is nn.ReLU else 2.5)  # some dead / saturated units
    linears = [m for m in model if isinstance(m, nn.Linear)]
    acts = [m for m in model if isinstance(m, act)]
    t, outs = _one_step_keeping(model, torch.randn(32, 4) * 2, linears + acts)
    assert [info.activation for info in t.layers] == [act.__name__] * 3 + [None]
    for i, lin in enumerate(linears):
        y = (outs[acts[i]] if i < len(acts) else outs[lin]).detach().double()
        assert t.matrix("act_mean")[0, i] == pytest.approx(y.mean().item(), rel=1e-5, abs=1e-7)
        assert t.matrix("act_std")[0, i] == pytest.approx(
            y.std(unbiased=False).item(), rel=1e-4, abs=1e-6
        )
        og = outs[lin].grad.double().norm().item()
        assert t.matrix("out_grad_norm")[0, i] == pytest.approx(og, rel=1e-5)
        # Read off float32 sums: the saturated sigmoid's tiny variance (7e-4 of the variance
        # share) comes out 3e-6 off, well inside what a rule reading it needs.
        share = t.matrix("act_between_inputs")[0, i]
        assert share == pytest.approx(_between_share([y]), rel=1e-4, abs=1e-5)
        if i == len(acts):
            assert math.isnan(t.matrix("act_saturated")[0, i])
            continue
        if act is nn.ReLU:
            dead = (y <= 0).all(dim=0).double().mean().item()
            assert t.matrix("act_dead")[0, i] == pytest.approx(dead)
            assert math.isnan(t.matrix("act_saturated")[0, i])
        else:
            lo, hi = (0.03, 0.97) if act is nn.Sigmoid else (-0.97, 0.97)
            sat = ((y <= lo) | (y >= hi)).double().mean().item()
            assert t.matrix("act_saturated")[0, i] == pytest.approx(sat)
            assert math.isnan(t.matrix("act_dead")[0, i])
    assert t.matrix("act_dead")[0, 0] > 0 if act is nn.ReLU else t.matrix("act_saturated")[0, 0] > 0


@pytest.mark.parametrize("mode", ["batched", "chunked", "in-hook", "in-hook, per unit"])
@pytest.mark.parametrize("act", [nn.ReLU, nn.ReLU6, nn.LeakyReLU])
def test_conv_activation_statistics_per_channel_match_reference(
    act: type[nn.Module], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Conv -> activation: act_mean, act_std and act_dead (a unit is a channel, dead when it
    is never positive over the batch and positions) equal float64 values. ReLU and ReLU6
    read the alive channels off per-channel sums (their outputs are never negative),
    LeakyReLU off per-channel maxima: both against the same reference, with channels made
    dead by a very negative bias or an all-zero output, and others alive through one large
    input position. In the hook, ReLU and ReLU6 per unit as on an accelerator too (LeakyReLU
    keeps the CPU's reduction there)."""
    from gradwatch.recording import activations, stats

    if mode.startswith("in-hook"):
        monkeypatch.setattr(activations, "_STASH_BYTES", 0)
    if mode == "in-hook, per unit":  # the accelerators' one var_mean per output, on CPU
        monkeypatch.setattr(stats, "_per_unit_kernel", lambda t: True)
    if mode == "chunked":
        monkeypatch.setattr(activations, "STACK_BYTES", 2 * 4 * 8 * 6 * 6 * 4)
    torch.manual_seed(5)
    model = nn.Sequential(
        *[m for _ in range(3) for m in (nn.Conv2d(8, 8, 3, padding=1), act())],
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 2),
    )
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    acts = [m for m in model if isinstance(m, act)]
    with torch.no_grad():
        for conv in convs:
            conv.bias[:3] = -50.0  # channels 0-2: never positive
        convs[1].weight[3].zero_()
        convs[1].bias[3] = 0.0  # channel 3 of layer 1: exactly 0 everywhere (dead too)
    x = torch.randn(4, 8, 6, 6)
    x[:, :, 0, 0] = 30.0  # a single large position, so some channels live by one entry
    t, outs = _one_step_keeping(model, x, acts)
    for i, a in enumerate(acts):
        y = outs[a].detach().double()
        assert t.matrix("act_mean")[0, i] == pytest.approx(y.mean().item(), rel=1e-5, abs=1e-7)
        assert t.matrix("act_std")[0, i] == pytest.approx(
            y.std(unbiased=False).item(), rel=1e-4, abs=1e-6
        )
        dead = (y <= 0).all(dim=(0, 2, 3)).double().mean().item()
        assert t.matrix("act_dead")[0, i] == pytest.approx(dead), (i, dead)
        # A unit is a channel: the batch and the positions are the inputs.
        share = t.matrix("act_between_inputs")[0, i]
        assert share == pytest.approx(_between_share([y], unit_dim=1), rel=1e-4, abs=1e-6)
    assert t.matrix("act_dead")[0, 1] >= 4 / 8


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
@pytest.mark.parametrize("batch_first", [True, False])
def test_recurrent_input_gradient_profile_matches_autograd(
    cls: type[nn.RNNBase], batch_first: bool
) -> None:
    """The per-time-step norm of dL/dx_t equals x.grad's, for every cell type and layout."""
    rnn = cls(3, 5, batch_first=batch_first)
    x = torch.randn(4, 7, 3) if batch_first else torch.randn(7, 4, 3)
    with gw.watch(rnn) as w:
        out, _ = rnn(x)
        out.sum().backward()
        w.step()
    xr = x.clone().requires_grad_(True)
    rnn.zero_grad()
    out, _ = rnn(xr)
    out.sum().backward()
    dims = (0, 2) if batch_first else (1, 2)
    expected = xr.grad.double().square().sum(dim=dims).sqrt().numpy()
    prof = w.trace.input_grad_profile("")
    np.testing.assert_array_equal(prof.steps, [0])
    np.testing.assert_allclose(prof.values[0], expected, rtol=1e-5)


def test_global_grad_norm_and_loss_scalars() -> None:
    """global_grad_norm is the norm over all layers; logged tensors are stored as floats."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses, norms = [], []
    with gw.watch(model, opt) as w:
        for _ in range(3):
            opt.zero_grad()
            loss = model(torch.randn(8, 4)).pow(2).mean()
            loss.backward()
            norms.append(torch.cat([p.grad.double().flatten() for p in model.parameters()]).norm())
            opt.step()
            w.log(loss=loss, lr=0.1)
            losses.append(loss.item())
    t = w.trace
    np.testing.assert_allclose(t.scalar("loss"), losses, rtol=1e-7)
    np.testing.assert_allclose(t.scalar("global_grad_norm"), [n.item() for n in norms], rtol=1e-5)
    np.testing.assert_array_equal(t.scalar("skipped"), [0, 0, 0])
    np.testing.assert_array_equal(t.scalar("lr"), [0.1] * 3)


def test_sampled_metrics_are_contiguous_in_the_buffer_layout() -> None:
    """The recorder writes the sampled activation metrics as one slice of LAYER_METRICS."""
    from gradwatch.recording.activations import SAMPLED_METRICS
    from gradwatch.recording.buffer import METRIC_ROW
    from gradwatch.trace import LAYER_METRICS

    first = METRIC_ROW[SAMPLED_METRICS[0]]
    assert LAYER_METRICS[first : first + len(SAMPLED_METRICS)] == SAMPLED_METRICS


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_float64_and_bfloat16_models_are_recorded(dtype: torch.dtype) -> None:
    """Statistics of float64 and bfloat16 models are computed (in at least float32) and finite."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2), nn.ReLU()).to(dtype)
    x = torch.randn(5, 3).to(dtype)
    with gw.watch(model) as w:
        model(x).float().sum().backward()
        w.step()
    t = w.trace
    ref = torch.cat([p.grad.double().flatten() for p in model[0].parameters()]).norm().item()
    assert t.matrix("grad_norm")[0, 0] == pytest.approx(ref, rel=1e-6)
    for metric in ("act_std", "out_grad_norm", "weight_norm", "grad_max"):
        assert np.isfinite(t.matrix(metric)).all(), metric


def test_plain_steps_batch_small_gradients_and_match_float64() -> None:
    """On plain (unsampled) steps, large gradients (one dot each) and small ones (concatenated)
    give grad_norm, grad_rms and the global norm of a float64 loop, also when a layer's bias
    has no gradient at one step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 200), nn.Tanh(), nn.Linear(200, 3), nn.Linear(3, 5))
    layers = _linears(model)
    gen = torch.Generator().manual_seed(7)
    expected, globals_ = [], []
    with gw.watch(model, activations=False, sample_every=1000, dense_steps=0) as w:
        for step in range(4):
            for p in model.parameters():
                p.grad = torch.randn(p.shape, generator=gen) * 10.0 ** (step - 2)
            if step == 2:
                model[2].bias.grad = None
            w.step()
            row = []
            for layer in layers:
                g = torch.cat(
                    [p.grad.double().flatten() for p in layer.parameters() if p.grad is not None]
                )
                row.append([g.norm().item(), g.norm().item() / math.sqrt(g.numel())])
            expected.append(row)
            globals_.append(
                torch.cat(
                    [p.grad.double().flatten() for p in model.parameters() if p.grad is not None]
                )
                .norm()
                .item()
            )
    t = w.trace
    exp = np.array(expected)
    np.testing.assert_allclose(t.matrix("grad_norm"), exp[:, :, 0], rtol=1e-5)
    np.testing.assert_allclose(t.matrix("grad_rms"), exp[:, :, 1], rtol=1e-5)
    np.testing.assert_allclose(t.scalar("global_grad_norm"), globals_, rtol=1e-5)
    np.testing.assert_array_equal(t.matrix("nonfinite"), np.zeros((4, 3)))
    assert np.isnan(t.matrix("grad_max")[1:]).all()  # max |g| only on sampled steps


def test_plain_step_nonfinite_counts_with_batched_small_gradients() -> None:
    """A NaN in a small (batched) gradient and an inf in a large one are counted exactly."""
    model = nn.Sequential(nn.Linear(100, 80), nn.Tanh(), nn.Linear(80, 4))
    with gw.watch(model, activations=False, sample_every=1000, dense_steps=0) as w:
        for _ in range(2):
            for p in model.parameters():
                p.grad = torch.ones_like(p)
            w.step()
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        model[0].weight.grad[0, :2] = math.inf
        model[2].bias.grad[1] = math.nan
        w.step()
    t = w.trace
    np.testing.assert_array_equal(t.matrix("nonfinite"), [[0, 0], [0, 0], [2, 1]])
    assert math.isnan(t.scalar("global_grad_norm")[2])


def test_an_output_changed_in_place_after_its_hook_is_left_out() -> None:
    """A raw layer output modified in place later in the forward is not measured (its values
    are gone by the step); the other layers are, and training is unaffected."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 6)
            self.b = nn.Linear(6, 6)
            self.c = nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.a(x))
            z = self.b(h)
            z.mul_(2.0)  # in place, after b's forward hook ran
            return self.c(z)

    net = Net()
    with gw.watch(net) as w:
        net(torch.randn(8, 4)).sum().backward()
        w.step()
    mean = w.trace.matrix("act_mean")[0]
    assert np.isfinite(mean[0]) and np.isfinite(mean[2])
    assert np.isnan(mean[1])
    assert np.isfinite(w.trace.matrix("out_grad_norm")[0]).all()


def test_in_place_relu_is_measured_from_its_own_output() -> None:
    """Linear -> ReLU(inplace=True): act_mean and act_dead describe the ReLU's output, on the
    first step (when the layer's raw output was also kept) and after."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(inplace=True), nn.Linear(16, 2))
    with torch.no_grad():
        model[0].bias[:5] = -50.0  # 5 dead units
    x = torch.randn(32, 4)
    with gw.watch(model, sample_every=1) as w:
        for _ in range(2):
            model.zero_grad()
            model(x).sum().backward()
            w.step()
    y = torch.relu(model[0](x)).detach().double()
    t = w.trace
    np.testing.assert_allclose(t.matrix("act_mean")[:, 0], [y.mean().item()] * 2, rtol=1e-5)
    np.testing.assert_allclose(t.matrix("act_dead")[:, 0], [5 / 16] * 2)


def test_activation_statistics_cover_every_forward_of_an_accumulated_step() -> None:
    """Two forward/backward passes before one optimizer step: act_mean, act_std, act_dead and
    out_grad_norm describe both micro-batches together."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: weights stay put
    xs = [torch.randn(16, 4), torch.randn(16, 4) * 3]
    relu_outs, lin_grads = [], []
    for x in xs:  # the reference, before watching
        z = model[0](x)
        z.retain_grad()
        model[2](model[1](z)).sum().backward()
        relu_outs.append(torch.relu(z).detach().double())
        lin_grads.append(z.grad.double())  # type: ignore[union-attr]
    with gw.watch(model, opt) as w:
        opt.zero_grad()
        for x in xs:
            model(x).sum().backward()
        opt.step()
    both = torch.cat(relu_outs)
    t = w.trace
    assert t.matrix("act_mean")[0, 0] == pytest.approx(both.mean().item(), rel=1e-5)
    assert t.matrix("act_std")[0, 0] == pytest.approx(both.std(unbiased=False).item(), rel=1e-4)
    dead = (both <= 0).all(dim=0).double().mean().item()
    assert t.matrix("act_dead")[0, 0] == pytest.approx(dead)
    og = math.sqrt(sum(g.square().sum().item() for g in lin_grads))
    assert t.matrix("out_grad_norm")[0, 0] == pytest.approx(og, rel=1e-5)
    # Each forward's inputs against its own means (the micro-batch, as a DDP rank's batch).
    share = t.matrix("act_between_inputs")[0, 0]
    assert share == pytest.approx(_between_share(relu_outs), rel=1e-4)
    assert share != pytest.approx(_between_share([both]), rel=1e-3)


def test_between_inputs_share_reads_collapse_and_ignores_a_shared_pattern() -> None:
    """act_between_inputs is the share of an output's variance that differs between inputs:
    near 0 when every input (here every token of every sequence) gets the same vector, 1 for
    independent noise, lowered by a pattern over the units that every input shares, unchanged
    by an offset common to every unit (a sigmoid's 0.5), and missing for an output with one
    input per unit."""

    class Fixed(nn.Module):
        """A layer whose output is ``make(x)`` (times a trainable 1)."""

        def __init__(self, make: object) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))
            self.make = make

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.scale * self.make(x)  # type: ignore[operator]

    torch.manual_seed(0)
    x = torch.randn(4, 50, 3)  # (batch, tokens, units)
    pattern = torch.tensor([5.0, -2.0, 0.5])
    wiggle = 1e-3 * torch.randn(4, 50, 3)
    cases = {
        "collapsed": (lambda x: pattern + wiggle, 0.0, 1e-5),
        "noise": (lambda x: torch.randn(4, 50, 3), 1.0, 0.05),
        "noise + shared pattern": (lambda x: pattern + x, _between_share([x + pattern]), 1e-4),
        "noise + offset": (lambda x: 0.5 + x, _between_share([x]), 1e-4),
    }
    for name, (make, want, tol) in cases.items():
        model = nn.Sequential(Fixed(make))
        with gw.watch(model) as w:
            model(x).sum().backward()
            w.step()
        got = w.trace.matrix("act_between_inputs")[0, 0]
        assert got == pytest.approx(want, abs=tol), name
    assert _between_share([x + pattern]) < 0.5 * _between_share([x])
    single = nn.Sequential(Fixed(lambda x: x))
    with gw.watch(single) as w:
        single(torch.randn(1, 3)).sum().backward()  # one input: nothing to vary
        w.step()
    assert math.isnan(w.trace.matrix("act_between_inputs")[0, 0])
