"""Hand-built traces for the report tests: every metric the report draws, with known values."""

from __future__ import annotations

import numpy as np
import pytest

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
