"""TensorBoard export: read the event files back with TensorBoard's reader and compare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradwatch.report import export_tensorboard
from gradwatch.report.tensorboard import LOG10_METRICS
from gradwatch.trace import Trace

from .conftest import make_trace, write_run

pytest.importorskip("tensorboard")


def _accumulator(logdir: Path):  # type: ignore[no-untyped-def]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trace, object]:
    """A hand-built trace exported once, and TensorBoard's reader over the result."""
    trace = make_trace(n_layers=4, n_steps=30)
    logdir = export_tensorboard(trace, tmp_path_factory.mktemp("tb") / "run")
    return trace, _accumulator(logdir)


def test_every_measured_layer_value_is_a_scalar_event(exported: tuple[Trace, object]) -> None:
    """Tag <metric>/L<depth> <layer> holds exactly the trace's non-missing values at their steps."""
    trace, acc = exported
    tags = set(acc.Tags()["scalars"])  # type: ignore[attr-defined]
    for metric in trace.metrics:
        mat = trace.matrix(metric)
        for j, layer in enumerate(trace.layer_names):
            tag = f"{metric}/L{j:02d} {layer}"  # depth zero-padded: text order = depth order
            events = acc.Scalars(tag)  # type: ignore[attr-defined]
            want = [
                (int(s), float(v))
                for s, v in zip(trace.steps, mat[:, j], strict=True)
                if not np.isnan(v)
            ]
            assert [e.step for e in events] == [s for s, _ in want]
            np.testing.assert_allclose([e.value for e in events], [v for _, v in want], rtol=1e-6)
            tags.discard(tag)
    # What is left: the per-step scalars (the recurrent horizon is never reached here).
    assert tags == {"loss", "global_grad_norm"}


def test_missing_values_are_not_written_as_zero(exported: tuple[Trace, object]) -> None:
    """A sampled metric has events only at its sampled steps (every 10th)."""
    _, acc = exported
    steps = [e.step for e in acc.Scalars("update_ratio/L00 net.0")]  # type: ignore[attr-defined]
    assert steps == [0, 10, 20]


def test_step_scalars_round_trip(exported: tuple[Trace, object]) -> None:
    """loss comes back with its steps and values."""
    trace, acc = exported
    events = acc.Scalars("loss")  # type: ignore[attr-defined]
    assert [e.step for e in events] == trace.scalar_steps.tolist()
    np.testing.assert_allclose([e.value for e in events], trace.scalar("loss"), rtol=1e-6)


def test_histograms_across_layers_match_the_trace(exported: tuple[Trace, object]) -> None:
    """Each histogram counts the layers measured at that step; log10 for norm-like metrics."""
    trace, acc = exported
    for metric in ("grad_rms", "act_dead"):
        tag = (
            f"across_layers/log10_{metric}"
            if metric in LOG10_METRICS
            else f"across_layers/{metric}"
        )
        events = acc.Histograms(tag)  # type: ignore[attr-defined]
        mat = trace.matrix(metric)
        rows = [i for i in range(len(trace.steps)) if np.isfinite(mat[i]).any()]
        assert [e.step for e in events] == [int(trace.steps[i]) for i in rows]
        for e, i in zip(events, rows, strict=True):
            vals = mat[i][np.isfinite(mat[i])]
            if metric in LOG10_METRICS:
                vals = np.log10(vals)
            h = e.histogram_value
            assert h.num == len(vals)
            assert h.min == pytest.approx(vals.min()) and h.max == pytest.approx(vals.max())
            assert h.sum == pytest.approx(vals.sum())


def test_no_horizon_tag_when_memory_outlasts_the_sequence(exported: tuple[Trace, object]) -> None:
    """0.7**d stays above 1e-3 for all 20 inputs: no horizon is written (not a fake value)."""
    trace, acc = exported
    layer = trace.recurrent_layers[0]
    t_len = trace.input_grad_profile(layer).values.shape[1]
    assert all(0.7**d >= 1e-3 for d in range(t_len))
    scalars = acc.Tags()["scalars"]  # type: ignore[attr-defined]
    assert not [t for t in scalars if t.startswith("memory_horizon") and t.endswith(f" {layer}")]


def test_memory_horizon_written_when_reached(tmp_path: Path) -> None:
    """With a fast-decaying profile the horizon scalar equals the first distance below 1e-3."""
    prof = np.array([[0.1 ** (9 - t) for t in range(10)]] * 2)  # by distance d: 0.1**d
    trace = Trace.from_arrays(
        ["rnn"], [0, 5], {"grad_rms": [[1.0], [1.0]]}, recurrent={"rnn": ([0, 5], prof)}
    )
    acc = _accumulator(export_tensorboard(trace, tmp_path / "tb", histograms=False))
    expected = next(d for d in range(10) if 0.1**d < 1e-3)
    events = acc.Scalars("memory_horizon/L00 rnn")
    assert [(e.step, e.value) for e in events] == [(0, expected), (5, expected)]
    assert acc.Tags()["histograms"] == []


def test_last_position_memory_horizon_has_its_own_tag(tmp_path: Path) -> None:
    """A language model's last-position profile gets its own horizon tag beside the (flat)
    whole-loss one, which reaches no horizon."""
    dying = np.array([[0.1 ** (9 - t) for t in range(10)]])
    trace = Trace.from_arrays(
        ["rnn"],
        [0],
        {"grad_rms": [[1.0]]},
        recurrent={"rnn": ([0], np.ones((1, 10)))},
        last_position={"rnn": ([0], dying)},
    )
    acc = _accumulator(export_tensorboard(trace, tmp_path / "tb", histograms=False))
    events = acc.Scalars("memory_horizon_last_position/L00 rnn")
    assert [(e.step, e.value) for e in events] == [(0, 4)]  # 0.1**4 < 1e-3
    assert "memory_horizon/L00 rnn" not in acc.Tags()["scalars"]


def test_export_from_run_directory(tmp_path: Path) -> None:
    """A run directory is loaded and exported (float32 storage precision)."""
    trace = make_trace(n_layers=3, n_steps=12, recurrent=False)
    run = write_run(trace, tmp_path / "run")
    acc = _accumulator(export_tensorboard(str(run), tmp_path / "tb", histograms=False))
    events = acc.Scalars("grad_rms/L02 net.2")
    np.testing.assert_allclose([e.value for e in events], trace.matrix("grad_rms")[:, 2], rtol=1e-6)


def test_logdir_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    """logdir must be a directory; the error says so."""
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="`logdir` to be a directory"):
        export_tensorboard(make_trace(n_steps=2), f)
