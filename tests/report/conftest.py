"""Hand-built traces for the report tests: every metric the report draws, with known values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradwatch.diagnosis import Finding, RemedyHint
from gradwatch.trace import LayerInfo, Trace

XSS_NAME = "<script>window.__xss=1</script>"
XSS_IMG = '<img src=x onerror="window.__xss=2">'


def make_trace(
    *,
    n_layers: int = 6,
    n_steps: int = 60,
    sample_every: int = 10,
    decay: float = 0.3,
    seed: int = 0,
    names: list[str] | None = None,
    recurrent: bool = True,
    meta: dict[str, object] | None = None,
) -> Trace:
    """A vanishing-gradient-like trace: grad_rms falls by ``10**-decay`` per layer towards 0.

    Sampled metrics (update ratio, activations, out_grad_norm, recurrent profile) exist only
    every ``sample_every`` steps, as the recorder writes them; the rest are NaN.
    """
    rng = np.random.default_rng(seed)
    names = names or [f"net.{i}" for i in range(n_layers)]
    layers = [
        LayerInfo(name=n, type="Linear", depth=i, num_params=100, activation="Tanh")
        for i, n in enumerate(names)
    ]
    steps = np.arange(n_steps)
    depth_scale = 10.0 ** (-decay * (n_layers - 1 - np.arange(n_layers)))
    grad_rms = depth_scale[None, :] * np.exp(rng.normal(0, 0.1, (n_steps, n_layers)))
    sampled = steps % sample_every == 0
    nan = np.full((n_steps, n_layers), np.nan)

    def sampled_only(values: np.ndarray) -> np.ndarray:
        out = nan.copy()
        out[sampled] = values[sampled]
        return out

    out_grad = depth_scale[None, :] * 2.0 * np.exp(rng.normal(0, 0.05, (n_steps, n_layers)))
    out_grad[:, : n_layers // 2] *= 1e-2  # an extra drop between layer n/2 and n/2 - 1
    metrics = {
        "grad_rms": grad_rms,
        "grad_norm": grad_rms * 10.0,
        "update_ratio": sampled_only(1e-3 * depth_scale[None, :] * np.ones((n_steps, n_layers))),
        "act_mean": sampled_only(rng.normal(0, 0.1, (n_steps, n_layers))),
        "act_std": sampled_only(np.abs(rng.normal(0.5, 0.1, (n_steps, n_layers)))),
        "act_saturated": sampled_only(rng.uniform(0, 1, (n_steps, n_layers))),
        "act_dead": sampled_only(rng.uniform(0, 0.2, (n_steps, n_layers))),
        "act_between_inputs": sampled_only(rng.uniform(0.3, 1, (n_steps, n_layers))),
        "out_grad_norm": sampled_only(out_grad),
    }
    loss = 2.0 * np.exp(-steps / 30) + 0.1
    rec = None
    if recurrent:
        t_len = 20
        prof_steps = steps[sampled]
        prof = 0.7 ** np.arange(t_len)[::-1][None, :] * np.ones((len(prof_steps), 1))
        rec = {names[0]: (prof_steps, prof)}
    return Trace.from_arrays(
        layers,
        steps,
        metrics,
        scalars={"loss": loss, "global_grad_norm": np.linalg.norm(grad_rms * 10.0, axis=1)},
        recurrent=rec,
        meta=meta
        if meta is not None
        else {
            "config": {"every": 1, "sample_every": sample_every},
            "versions": {"torch": "2.13.0", "gradwatch": "0.1.0"},
            "model": {"class": "MLP"},
        },
    )


@pytest.fixture
def trace() -> Trace:
    """The default hand-built vanishing trace."""
    return make_trace()


def xss_finding() -> Finding:
    """A critical finding whose message and layers carry HTML that must be shown as text."""
    return Finding(
        rule="vanishing_gradient",
        severity="critical",
        layers=(XSS_NAME, "net.1"),
        steps=(0, 59),
        evidence={"first_to_last_ratio": 1.2e-6, "threshold": 1e-3, "note": XSS_IMG},
        message="The first layers get 1e-6 of the last layer's gradient <b>bold?</b>",
        remedies=(
            RemedyHint("residual", "skip connections carry the gradient past shrinking layers"),
            RemedyHint("init_xavier", "keeps the per-layer gain near 1"),
        ),
    )


@pytest.fixture(scope="session")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Reports rendered once per session: one run with injected names, and two runs."""
    from gradwatch.report import write_report

    out = tmp_path_factory.mktemp("reports")
    names = [XSS_NAME, XSS_IMG, *[f"net.{i}" for i in range(2, 6)]]
    bad = make_trace(
        names=names,
        meta={"config": {"every": 1, "note": XSS_NAME}, "versions": {"torch": "2.13.0"}},
    )
    single = write_report(bad, out / "single.html", findings=[xss_finding()], predicted=0.25)
    # The two-run report uses lean traces (gradient RMS and loss only): fewer figures to draw.
    double = write_report(
        [_lean(bad), _lean(make_trace(decay=0.01, seed=5))],
        out / "double.html",
        findings=[[xss_finding()], []],
        title=f"compare {XSS_IMG}",
        labels=[XSS_NAME, "healthy"],
    )
    return {"single": single, "double": double}


def _lean(trace: Trace) -> Trace:
    """The same run with only grad_rms and the scalars (no sampled metrics, no profiles)."""
    return Trace.from_arrays(
        list(trace.layers),
        trace.steps,
        {"grad_rms": trace.matrix("grad_rms")},
        scalars={n: trace.scalar(n) for n in trace.scalar_names},
        scalar_steps=trace.scalar_steps,
        meta={k: v for k, v in trace.meta.items() if k != "layers"},
    )


def write_run(trace: Trace, run_dir: Path) -> Path:
    """Store a hand-built trace as a run directory, in the chunk format the recorder writes."""
    import pyarrow as pa

    from gradwatch.trace import RunWriter

    writer = RunWriter(run_dir)
    writer.write_meta({k: v for k, v in trace.meta.items() if k != "format_version"})
    n_steps, n_layers = len(trace.steps), len(trace.layers)
    cols: dict[str, object] = {
        "step": pa.array(np.repeat(trace.steps, n_layers), pa.int64()),
        "layer": pa.array(np.tile(np.arange(n_layers), n_steps), pa.int64()),
    }
    for m in trace.metrics:
        cols[m] = pa.array(trace.matrix(m).reshape(-1).astype(np.float32), pa.float32())
    writer.write_chunk("layers", pa.table(cols))
    scal: dict[str, object] = {"step": pa.array(trace.scalar_steps, pa.int64())}
    for name in trace.scalar_names:
        scal[name] = pa.array(trace.scalar(name), pa.float64())
    writer.write_chunk("scalars", pa.table(scal))
    return run_dir
