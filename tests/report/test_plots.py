"""The plots draw exactly the trace's data: each figure's arrays vs naive lookups in the trace."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradwatch.report import plots
from gradwatch.trace import Trace

from .conftest import make_trace


def _row(trace: Trace, metric: str, step: int) -> np.ndarray:
    """Naive lookup of one step's row, by scanning the steps."""
    for i, s in enumerate(trace.steps.tolist()):
        if s == step:
            return np.array(trace.matrix(metric)[i])
    raise AssertionError(f"step {step} not in trace")


def _measured_steps(trace: Trace, metric: str) -> list[int]:
    mat = trace.matrix(metric)
    return [
        int(s) for i, s in enumerate(trace.steps) if any(math.isfinite(v) for v in mat[i].tolist())
    ]


def test_gradient_flow_default_moments_are_first_last_and_evenly_spaced(trace: Trace) -> None:
    """By default four steps are drawn: the first, the last and two evenly spaced between."""
    data = plots.gradient_flow_data(trace)
    measured = _measured_steps(trace, "grad_rms")  # 0..59
    n = len(measured)
    expected = [measured[round(k * (n - 1) / 3)] for k in range(4)]
    assert data.steps.tolist() == expected
    for step, row in zip(data.steps, data.values, strict=True):
        np.testing.assert_array_equal(row, _row(trace, "grad_rms", int(step)))
    assert data.layers == trace.layer_names


def test_gradient_flow_figure_lines_hold_the_trace_values(trace: Trace) -> None:
    """Each drawn line's y data is the trace row at its step (log axis, one line per step)."""
    fig = plots.plot_gradient_flow(trace, steps=[0, 30, 59])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert fig.gradwatch_data.steps.tolist() == [0, 30, 59]
    lines = [ln for ln in ax.lines if ln.get_label().startswith("step ")]
    assert [ln.get_label() for ln in lines] == ["step 0", "step 30", "step 59"]
    for ln, step in zip(lines, [0, 30, 59], strict=True):
        np.testing.assert_allclose(ln.get_ydata(), _row(trace, "grad_rms", step))
        np.testing.assert_array_equal(ln.get_xdata(), np.arange(len(trace.layers)))


def test_gradient_flow_zero_gradient_is_marked_not_dropped() -> None:
    """A layer whose gradient is exactly 0 gets a marker at the bottom edge instead of vanishing."""
    t = Trace.from_arrays(["a", "b", "c"], [0], {"grad_rms": [[0.0, 1e-3, 1.0]]})
    fig = plots.plot_gradient_flow(t)
    line, zeros = fig.axes[0].lines[:2]
    assert math.isnan(line.get_ydata()[0])  # cannot sit on a log axis ...
    assert zeros.get_xdata().tolist() == [0]  # ... so it is marked separately
    assert zeros.get_marker() == "v"


def test_gradient_flow_infinite_gradient_is_marked_on_top() -> None:
    """An infinite gradient (explosion) gets an upward marker on the top edge."""
    t = Trace.from_arrays(["a", "b", "c"], [0], {"grad_rms": [[1.0, np.inf, 1.0]]})
    fig = plots.plot_gradient_flow(t)
    line, top = fig.axes[0].lines[:2]
    assert math.isnan(line.get_ydata()[1])
    assert top.get_xdata().tolist() == [1] and top.get_ydata().tolist() == [1.0]
    assert top.get_marker() == "^"


def test_gradient_flow_rejects_unmeasured_step(trace: Trace) -> None:
    """Asking for a step that was not recorded names the measured range."""
    with pytest.raises(ValueError, match="step 1000 has no measured 'grad_rms'"):
        plots.gradient_flow_data(trace, steps=[1000])


def test_missing_metric_error_names_the_metric() -> None:
    """A trace without the metric gives a ValueError that names it and what the trace has."""
    t = Trace.from_arrays(["a"], [0], {"grad_norm": [[1.0]]})
    with pytest.raises(ValueError, match=r"no metric 'grad_rms' \(it has \['grad_norm'\]\)"):
        plots.plot_gradient_flow(t)


def test_heatmap_of_sampled_metric_keeps_only_measured_steps(trace: Trace) -> None:
    """update_ratio exists every 10th step: the heatmap has those columns, layers as rows."""
    data = plots.heatmap_data(trace, "update_ratio")
    assert data.steps.tolist() == _measured_steps(trace, "update_ratio") == [0, 10, 20, 30, 40, 50]
    assert data.values.shape == (len(trace.layers), 6)
    for j, step in enumerate(data.steps):
        np.testing.assert_array_equal(data.values[:, j], _row(trace, "update_ratio", int(step)))


def test_heatmap_thins_columns_evenly_beyond_max_steps(trace: Trace) -> None:
    """With max_steps=5, five measured steps are kept, first and last included."""
    data = plots.heatmap_data(trace, "grad_rms", max_steps=5)
    assert data.steps.tolist() == [round(k * 59 / 4) for k in range(5)]


def test_heatmap_mesh_shows_nan_as_missing_and_zero_as_under() -> None:
    """NaN cells are masked (drawn as 'not measured'); a 0 goes below the colour range."""
    vals = np.array([[1e-3, np.nan], [0.0, 1e-1]])
    t = Trace.from_arrays(["a", "b"], [0, 5], {"grad_rms": vals})
    fig = plots.plot_heatmap(t)
    mesh = fig.axes[0].collections[0]
    arr = mesh.get_array()  # (layers, steps), flattened by matplotlib
    shown = np.ma.asarray(arr).reshape(2, 2)
    assert shown.mask[1, 0]  # layer b at step 0: NaN -> masked
    assert not shown.mask[0, 1]  # layer a at step 5: 0 -> drawn ...
    assert shown[0, 1] < mesh.norm.vmin  # ... below vmin: the "under" colour
    assert mesh.norm.vmin == pytest.approx(1e-3) and mesh.norm.vmax == pytest.approx(1e-1)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["not measured", "exactly 0"]


def test_heatmap_shows_inf_above_the_colour_range() -> None:
    """An infinite value is drawn (not hidden as missing), above vmax: the "over" colour."""
    t = Trace.from_arrays(["a", "b"], [0], {"grad_rms": [[1e-2, np.inf]]})
    fig = plots.plot_heatmap(t)
    mesh = fig.axes[0].collections[0]
    shown = np.ma.asarray(mesh.get_array()).reshape(2, 1)
    assert not shown.mask[1, 0] and shown[1, 0] > mesh.norm.vmax
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["infinite"]


def test_backward_gain_finds_the_largest_drop(trace: Trace) -> None:
    """The marked layer is where the geometric-mean ‖∂L/∂h‖ falls most between neighbours."""
    data = plots.backward_gain_data(trace)
    steps = _measured_steps(trace, "out_grad_norm")
    n = len(trace.layers)
    geo = []
    for j in range(n):
        logs = [math.log(_row(trace, "out_grad_norm", s)[j]) for s in steps]
        geo.append(math.exp(sum(logs) / len(logs)))
    ratios = [geo[j] / geo[j + 1] for j in range(n - 1)]
    j_min = min(range(n - 1), key=lambda j: ratios[j])
    np.testing.assert_allclose(data.profile, geo, rtol=1e-12)
    assert data.drop_layer == j_min == n // 2 - 1  # the drop built into the trace
    assert data.drop_factor == pytest.approx(ratios[j_min])
    assert data.median_gain == pytest.approx(sorted(ratios)[len(ratios) // 2])  # n - 1 = 5: odd
    assert data.stands_out  # 1e-2 extra on top of the steady 10**-0.3 per layer


def test_backward_gain_steady_fall_does_not_blame_one_layer() -> None:
    """An even x0.1 per layer fall: the largest drop does not stand out, the median gain is 0.1."""
    prof = [[10.0 ** (j - 4) for j in range(5)]]
    t = Trace.from_arrays([f"l{j}" for j in range(5)], [0], {"out_grad_norm": prof})
    data = plots.backward_gain_data(t)
    assert data.median_gain == pytest.approx(0.1)
    assert not data.stands_out
    fig = plots.plot_backward_gain(t)
    texts = [a.get_text() for a in fig.axes[0].texts]
    assert any(s.startswith("steady fall, ×0.1 per layer") for s in texts)


def test_backward_gain_no_drop_when_gradient_grows_towards_input() -> None:
    """When ‖∂L/∂h‖ never falls going back, no layer is marked."""
    t = Trace.from_arrays(["a", "b", "c"], [0], {"out_grad_norm": [[4.0, 2.0, 1.0]]})
    data = plots.backward_gain_data(t)
    assert data.drop_layer is None and data.drop_factor is None


def test_activation_health_uses_first_and_last_sampled_steps(trace: Trace) -> None:
    """Saturated and dead fractions and the share between inputs are the trace rows at the
    first and last sampled steps."""
    data = plots.activation_health_data(trace)
    assert data.steps.tolist() == [0, 50]
    for k, s in enumerate([0, 50]):
        np.testing.assert_array_equal(data.saturated[k], _row(trace, "act_saturated", s))
        np.testing.assert_array_equal(data.dead[k], _row(trace, "act_dead", s))
        np.testing.assert_array_equal(data.between[k], _row(trace, "act_between_inputs", s))
    fig = plots.plot_activation_health(trace, step=20)
    drawn = next(ln for ln in fig.axes[0].lines if ln.get_label() == "between inputs, step 20")
    np.testing.assert_array_equal(drawn.get_ydata(), _row(trace, "act_between_inputs", 20))
    assert fig.gradwatch_data.steps.tolist() == [0, 20]
    solid = next(ln for ln in fig.axes[0].lines if ln.get_label() == "saturated, step 20")
    np.testing.assert_array_equal(solid.get_ydata(), _row(trace, "act_saturated", 20))


def test_activation_stats_band_is_mean_plus_minus_std(trace: Trace) -> None:
    """The shaded band spans mean - std to mean + std of the trace at the drawn step."""
    fig = plots.plot_activation_stats(trace)
    data = fig.gradwatch_data
    mean, std = _row(trace, "act_mean", 50), _row(trace, "act_std", 50)
    np.testing.assert_array_equal(data.mean[1], mean)
    np.testing.assert_array_equal(data.std[1], std)
    band = fig.axes[0].collections[1]  # second fill_between: the last step
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.max() == pytest.approx(float(np.max(mean + std)))
    assert ys.min() == pytest.approx(float(np.min(mean - std)))


def test_recurrent_memory_orders_by_distance_and_finds_the_horizon() -> None:
    """Distance 0 is the last input; the horizon is the first distance below threshold × g(0)."""
    t_len, decay, thr = 30, 0.7, 0.01
    prof = np.array([[decay ** (t_len - 1 - t) for t in range(t_len)]])
    tr = Trace.from_arrays(["rnn"], [0], {"grad_rms": [[1.0]]}, recurrent={"rnn": ([0], prof)})
    data = plots.recurrent_memory_data(tr, threshold=thr)
    np.testing.assert_allclose(data.values[0], [decay**d for d in range(t_len)])
    expected = next(d for d in range(t_len) if decay**d < thr * 1.0)
    assert data.horizons == [expected]
    fig = plots.plot_recurrent_memory(tr, threshold=thr)
    vlines = [ln for ln in fig.axes[0].lines if ln.get_label().startswith("memory horizon")]
    assert vlines[0].get_xdata()[0] == expected


def test_recurrent_memory_draws_the_last_positions_profile_when_recorded() -> None:
    """A language model's whole-loss profile is flat; the plot then shows the last position's
    profile (issue 12), and either can be asked for by name."""
    flat = np.ones((1, 20))
    dying = np.array([[0.5 ** (19 - t) for t in range(20)]])
    tr = Trace.from_arrays(
        ["rnn"],
        [0],
        {"grad_rms": [[1.0]]},
        recurrent={"rnn": ([0], flat)},
        last_position={"rnn": ([0], dying)},
    )
    data = plots.recurrent_memory_data(tr)
    assert data.kind == "last_position" and data.horizons == [10]  # 0.5**10 < 1e-3
    assert plots.recurrent_memory_data(tr, kind="whole").horizons == [None]
    fig = plots.plot_recurrent_memory(tr)
    assert "last position's loss" in fig.axes[0].get_title(loc="left")


def test_recurrent_memory_horizon_is_none_when_memory_outlasts_the_sequence() -> None:
    """A gradient that never falls below the threshold has no horizon within the sequence."""
    tr = Trace.from_arrays(
        ["rnn"], [0], {"grad_rms": [[1.0]]}, recurrent={"rnn": ([0], np.ones((1, 5)))}
    )
    assert plots.recurrent_memory_data(tr).horizons == [None]


def test_recurrent_memory_without_profiles_says_where_they_come_from() -> None:
    """A trace without recurrent layers gives a clear error."""
    t = Trace.from_arrays(["a"], [0], {"grad_rms": [[1.0]]})
    with pytest.raises(ValueError, match="no recurrent input-gradient profile"):
        plots.plot_recurrent_memory(t)


def test_loss_moving_average_matches_naive_trailing_mean() -> None:
    """Over 100 values the moving average is a trailing mean over len // 50 values."""
    rng = np.random.default_rng(1)
    n = 300
    loss = 1 + rng.uniform(0, 1, n)
    t = Trace.from_arrays(
        ["a"], np.arange(n), {"grad_rms": np.ones((n, 1))}, scalars={"loss": loss}
    )
    data = plots.loss_data(t)
    w = n // 50
    naive = [sum(loss[i - w + 1 : i + 1]) / w for i in range(w - 1, n)]
    assert data.window == w
    np.testing.assert_allclose(data.smooth, naive)
    assert data.smooth_steps.tolist() == list(range(w - 1, n))
    assert not data.log_scale  # values within 2x: a log axis would add nothing


def test_loss_marks_inf_and_trailing_nan_as_nonfinite() -> None:
    """inf counts; NaNs that run to the end after every-step logging count as a blow-up."""
    loss = np.array([3.0, 2.0, np.inf, 1.5, 1.0, np.nan, np.nan])
    t = Trace.from_arrays(
        ["a"], np.arange(7), {"grad_rms": np.ones((7, 1))}, scalars={"loss": loss}
    )
    data = plots.loss_data(t)
    assert data.nonfinite_steps.tolist() == [2, 5, 6]
    assert data.steps.tolist() == [0, 1, 3, 4]


def test_loss_logged_every_other_step_has_no_false_nonfinite() -> None:
    """NaN gaps from a scalar logged at a lower cadence are not reported as blow-ups."""
    loss = np.array([3.0, np.nan, 2.0, np.nan, 1.0, np.nan])
    t = Trace.from_arrays(
        ["a"], np.arange(6), {"grad_rms": np.ones((6, 1))}, scalars={"loss": loss}
    )
    assert plots.loss_data(t).nonfinite_steps.tolist() == []


def test_loss_error_tells_how_to_log_it() -> None:
    """A trace without a loss says how to log one."""
    t = Trace.from_arrays(["a"], [0], {"grad_rms": [[1.0]]})
    with pytest.raises(ValueError, match=r"w.log\(loss=...\)"):
        plots.plot_loss(t)


def test_compare_flow_takes_each_runs_last_measured_row() -> None:
    """Each run's profile is its own last measured grad_rms row, labels in order."""
    a, b = make_trace(seed=1), make_trace(n_layers=4, n_steps=30, seed=2)
    fig = plots.plot_compare_flow([a, b], ["deep", "shallow"])
    data = fig.gradwatch_data
    assert data.labels == ["deep", "shallow"] and data.steps == [59, 29]
    np.testing.assert_array_equal(data.profiles[0], _row(a, "grad_rms", 59))
    np.testing.assert_array_equal(data.profiles[1], _row(b, "grad_rms", 29))
    assert [ln.get_label() for ln in fig.axes[0].lines] == ["deep (step 59)", "shallow (step 29)"]


def test_compare_rejects_label_count_mismatch(trace: Trace) -> None:
    """One label per trace is required."""
    with pytest.raises(ValueError, match="one label per trace but got 1 labels for 2"):
        plots.compare_loss_data([trace, trace], ["only one"])


def test_compare_loss_curves_are_each_runs_finite_loss(trace: Trace) -> None:
    """Each curve is the run's own finite loss values at its scalar steps."""
    other = make_trace(n_steps=20, seed=4)
    data = plots.compare_loss_data([trace, other])
    np.testing.assert_array_equal(data.values[1], other.scalar("loss"))
    np.testing.assert_array_equal(data.steps[1], other.scalar_steps)
    assert data.labels == ["run 1", "run 2"]


def test_chi1_profile_closed_form() -> None:
    """Relative RMS at layer l of L is sqrt(chi_1) ** (L - 1 - l)."""
    prof = plots.chi1_profile(0.64, 4)
    np.testing.assert_allclose(prof, [0.8**3, 0.8**2, 0.8, 1.0])
    with pytest.raises(ValueError, match="`chi1` to be a positive number but got -1"):
        plots.chi1_profile(-1.0, 3)


@pytest.mark.parametrize(
    ("chi1", "n_layers"), [(0.02, 20), (0.25, 3), (0.64, 7), (1.0, 5), (1.7, 60)]
)
def test_chi1_profile_is_theorys_norm_profile(chi1: float, n_layers: int) -> None:
    """The report's chi_1 curve is gradwatch.theory's depth profile, number for number."""
    from gradwatch import theory

    np.testing.assert_array_equal(
        plots.chi1_profile(chi1, n_layers), theory.norm_profile(chi1, n_layers)
    )
    # and theory's profile of a computed mean-field result is the same curve
    r = theory.mean_field("tanh", 1.2, 0.1)
    np.testing.assert_array_equal(plots.chi1_profile(r.chi_1, n_layers), r.norm_profile(n_layers))


def test_theory_overlay_normalises_both_profiles_at_the_deepest_layer(trace: Trace) -> None:
    """Measured and predicted are divided by their values at the last layer; step 0 by default."""
    n = len(trace.layers)
    chi1 = 10 ** (-0.6)  # the trace's built-in 10**-0.3 RMS fall per layer
    data = plots.theory_overlay_data(trace, chi1)
    meas = _row(trace, "grad_rms", 0)
    assert data.step == 0 and data.ref_layer == n - 1
    np.testing.assert_allclose(data.measured, meas / meas[-1])
    np.testing.assert_allclose(data.predicted, [math.sqrt(chi1) ** (n - 1 - j) for j in range(n)])
    # The hand-built trace follows that slope up to its 10 % noise per layer.
    np.testing.assert_allclose(np.log10(data.measured), np.log10(data.predicted), atol=0.35)


def test_theory_overlay_legend_names_chi1(trace: Trace) -> None:
    """Given a single chi_1, the prediction's legend entry states it."""
    fig = plots.plot_theory_overlay(trace, 0.25)
    labels = [ln.get_label() for ln in fig.axes[0].lines]
    assert labels[1] == "mean-field prediction (χ₁ = 0.25 per layer)"


def test_theory_overlay_rejects_profile_of_wrong_length(trace: Trace) -> None:
    """A depth profile must have one value per layer."""
    with pytest.raises(ValueError, match="one value per layer \\(6\\) but it has 3"):
        plots.theory_overlay_data(trace, [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "make",
    [
        plots.plot_gradient_flow,
        plots.plot_heatmap,
        lambda t: plots.plot_heatmap(t, "update_ratio"),
        plots.plot_backward_gain,
        plots.plot_activation_health,
        plots.plot_activation_stats,
        plots.plot_recurrent_memory,
        plots.plot_loss,
        lambda t: plots.plot_compare_flow([t, t]),
        lambda t: plots.plot_compare_loss([t, t]),
        lambda t: plots.plot_theory_overlay(t, 0.5),
    ],
)
def test_every_plot_has_labelled_axes_a_look_for_title_and_its_data(trace: Trace, make) -> None:  # type: ignore[no-untyped-def]
    """Every figure labels both axes, says what to look for, and keeps its data."""
    fig = make(trace)
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    assert "Look for:" in ax.get_title(loc="left")
    assert fig.gradwatch_data is not None
    assert fig.get_size_inches().tolist() == [7.5, 4.2]


def test_dollar_in_a_name_is_not_parsed_as_math() -> None:
    """Layer and run names with '$' are escaped for matplotlib (no mathtext parse error)."""
    t = Trace.from_arrays(["a$b", "c$"], [0], {"grad_rms": [[1.0, 2.0]]}, scalars={"loss": [1.0]})
    fig = plots.plot_compare_loss([t], ["run $x"])
    png = plots.figure_to_png(plots.plot_gradient_flow(t))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig.axes[0].lines[0].get_label() == r"run \$x"


def test_figure_is_not_registered_with_pyplot(trace: Trace) -> None:
    """Plots do not touch pyplot's global figure list (safe in servers and threads)."""
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plots.plot_gradient_flow(trace)
    assert plt.get_fignums() == before


def test_recorded_rnn_memory_profile() -> None:
    """On an nn.RNN recorded by gw.watch, the plot's profile is the trace's, by distance."""
    torch = pytest.importorskip("torch")
    import gradwatch as gw

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.RNN(3, 16, batch_first=True)
            self.head = torch.nn.Linear(16, 1)

        def forward(self, x):  # type: ignore[no-untyped-def]
            out, _ = self.rnn(x)  # (B, T, H)
            return self.head(out[:, -1])  # loss on the last step only

    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(8, 30, 3), torch.randn(8, 1)
    with gw.watch(model, opt, sample_every=5, dense_steps=0, overhead=None) as w:
        for _ in range(10):
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    trace = w.trace
    data = plots.recurrent_memory_data(trace, threshold=1e-2)
    prof = trace.input_grad_profile("rnn")
    assert data.layer == "rnn" and data.steps.tolist() == prof.steps.tolist() == [0, 5]
    t_len = prof.values.shape[1]
    for k in range(2):
        by_distance = [prof.values[k][t_len - 1 - d] for d in range(t_len)]
        np.testing.assert_array_equal(data.values[k], by_distance)
        g0 = by_distance[0]
        expected = next((d for d in range(t_len) if by_distance[d] < 1e-2 * g0), None)
        assert data.horizons[k] == expected


#: The public names of gradwatch.report.plots when it was one file (users import them).
PUBLIC_BEFORE_SPLIT = [
    "ActivationHealthData",
    "ActivationStatsData",
    "BackwardGainData",
    "CompareFlowData",
    "CompareLossData",
    "GradientFlowData",
    "HeatmapData",
    "LossData",
    "RecurrentMemoryData",
    "TheoryOverlayData",
    "METRIC_LABELS",
    "activation_health_data",
    "activation_stats_data",
    "backward_gain_data",
    "chi1_profile",
    "compare_flow_data",
    "compare_loss_data",
    "figure_to_png",
    "gradient_flow_data",
    "heatmap_data",
    "loss_data",
    "plot_activation_health",
    "plot_activation_stats",
    "plot_backward_gain",
    "plot_compare_flow",
    "plot_compare_loss",
    "plot_gradient_flow",
    "plot_heatmap",
    "plot_loss",
    "plot_recurrent_memory",
    "plot_theory_overlay",
    "recurrent_memory_data",
    "theory_overlay_data",
]


def test_plots_keeps_every_public_name_and_defines_none_itself() -> None:
    """plots still offers each name it had as one file; each now lives in a figures module."""
    assert set(PUBLIC_BEFORE_SPLIT) <= set(plots.__all__)
    for name in plots.__all__:
        home = getattr(getattr(plots, name), "__module__", None) or "gradwatch.report.figures."
        assert home.startswith(("gradwatch.report.figures.", "gradwatch.report._style")), name


def test_depth_axis_ticks_are_layer_labels() -> None:
    """The depth axis names each layer L<depth> <name>, as the findings and tables do."""
    t = Trace.from_arrays(
        ["_orig_mod.fc0", "fc1", "fc2"], [0, 1], {"grad_rms": [[1e-3, 1e-2, 1.0]] * 2}
    )
    fig = plots.plot_gradient_flow(t)
    ticks = [x.get_text() for x in fig.axes[0].get_xticklabels()]
    assert ticks == ["L0 fc0", "L1 fc1", "L2 fc2"]
    assert fig.gradwatch_data.layers == t.layer_names  # the data keep the module names


def test_loss_plot_draws_the_recorded_learning_rate_on_its_own_axis() -> None:
    """optimizer_lr, where recorded, is a dashed line on a right-hand axis, in the legend;
    without it the figure has one axis, as before."""
    n = 40
    lr = 1e-3 * np.minimum(1.0, (np.arange(n) + 1) / 10)
    lr[1::2] = np.nan  # recorded every other step
    t = Trace.from_arrays(
        ["a"],
        np.arange(n),
        {"grad_rms": np.ones((n, 1))},
        scalars={"loss": 2.0 * 0.97 ** np.arange(n), "optimizer_lr": lr},
    )
    fig = plots.plot_loss(t)
    data = fig.gradwatch_data
    np.testing.assert_array_equal(data.lr_steps, np.arange(0, n, 2))
    np.testing.assert_array_equal(data.lr, lr[::2])
    assert len(fig.axes) == 2
    (line,) = fig.axes[1].lines
    np.testing.assert_array_equal(line.get_ydata(), lr[::2])
    legend = [x.get_text() for x in fig.axes[0].get_legend().get_texts()]
    assert legend == ["loss", "learning rate (right axis)"]
    bare = Trace.from_arrays(
        ["a"], np.arange(n), {"grad_rms": np.ones((n, 1))}, scalars={"loss": np.ones(n)}
    )
    assert len(plots.plot_loss(bare).axes) == 1 and len(plots.loss_data(bare).lr) == 0
