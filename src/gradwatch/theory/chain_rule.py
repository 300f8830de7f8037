"""The chain rule walked layer by layer: why the gradient shrinks or grows through depth.

For a sequential network ``h_{l+1} = W_{l+1} phi(h_l) + b_{l+1}`` backpropagation gives::

    dL/dh_l = W_{l+1}^T (phi'(h_l) * dL/dh_{l+1})

so, for random-like weights, each layer multiplies the gradient norm by about::

    gain_l = (||W_{l+1}||_F / sqrt(fan_out_{l+1}))  x  sqrt(mean(phi'(h_l)^2))
             weight scale (~ sigma_w)                  RMS activation derivative

(its square is mean-field theory's ``chi_1``). :func:`explain` measures both factors on a
batch, multiplies them along depth and compares the product with the gradient norms autograd
actually produces; from a recorded trace it walks the measured profile instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

    from gradwatch.trace import Trace

#: The gradient has "collapsed" (or "blown up") where it is this far from its last-layer size.
COLLAPSE_RATIO = 1e-3
#: A gain within this factor of 1 "keeps" the gradient; below shrinks it, above grows it.
KEEP_BAND = 1.25
#: dL/dh_l equals backprop through layer l+1 alone to this relative precision in a chain.
CHAIN_RTOL = 1e-3


@dataclass(frozen=True)
class LayerGain:
    """One layer of the chain-rule walk (rows are in forward order).

    The gain of row ``l`` is the factor from ``dL/dh_{l+1}`` back to ``dL/dh_l``: layer
    ``l+1``'s weights and the derivative of the activation that follows layer ``l``.

    Attributes:
        index: Depth (0 = first layer).
        name: Module name.
        grad_norm: ``||dL/dh_l||`` over the batch (model), or the recorded metric (trace).
        measured_gain: ``grad_norm_l / grad_norm_{l+1}``; ``None`` for the last layer.
        measured_ratio: ``grad_norm_l / grad_norm_last``.
        weight_scale: ``||W_{l+1}||_F / sqrt(fan_out_{l+1})`` (model only).
        rms_dphi: ``sqrt(mean(phi'(h_l)^2))`` over the batch (model only).
        mean_abs_dphi: ``mean(|phi'(h_l)|)`` over the batch (model only).
        predicted_gain: ``weight_scale * rms_dphi`` (model only).
        predicted_ratio: Product of the predicted gains from the last layer back to this one.
        chain: Whether ``dL/dh_l`` is exactly backprop through layer ``l+1`` alone (False
            for skip connections or branches: the walk's prediction does not apply there).
        between_inputs: The forward side (trace only, where recorded): the share of the
            layer's output variance that differs between inputs (``act_between_inputs`` at
            the measured step nearest the walk's). Near 0, every input reaches the layers
            after it as the same representation (the ordered phase of mean-field theory,
            where the gradient vanishes too).
    """

    index: int
    name: str
    grad_norm: float
    measured_gain: float | None
    measured_ratio: float
    weight_scale: float | None = None
    rms_dphi: float | None = None
    mean_abs_dphi: float | None = None
    predicted_gain: float | None = None
    predicted_ratio: float | None = None
    chain: bool | None = None
    between_inputs: float | None = None


@dataclass(frozen=True)
class ChainRuleWalk:
    """The chain rule walked through depth, and the sentence that sums it up.

    Attributes:
        source: ``"model"`` (measured on a batch) or ``"trace"`` (a recorded profile).
        metric: What ``grad_norm`` is: ``"dL/dh"`` (model), ``"out_grad_norm"`` or
            ``"grad_rms"`` (trace).
        step: Training step of the trace row used (trace only).
        rows: One :class:`LayerGain` per layer, in forward order.
        measured_ratio: ``grad_norm_first / grad_norm_last``.
        predicted_ratio: Product of all predicted gains (model only).
        collapse_layer: Index of the layer nearest the output where the gradient is below
            ``COLLAPSE_RATIO`` (or above its inverse) of its last-layer size; ``None`` if never.
        sentence: The explanation a user reads.
    """

    source: Literal["model", "trace"]
    metric: str
    step: int | None
    rows: tuple[LayerGain, ...]
    measured_ratio: float
    predicted_ratio: float | None
    collapse_layer: int | None
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite floats as strings)."""
        return dict(_json_safe(asdict(self)))


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- sentence
def fmt(x: float) -> str:
    """A ratio as people read it: 0.14, 3.2, 243, 4e-09, 2e+05."""
    if x == 0 or not math.isfinite(x):
        return str(x)
    if 10 <= abs(x) < 1e4:
        return f"{x:.0f}"
    if 1e-3 <= abs(x) < 10:
        return f"{x:.2g}"
    return f"{x:.0e}"


def _runs(gains: Sequence[float]) -> list[tuple[int, int, int]]:
    """Maximal runs (start, end inclusive, kind) with kind -1 shrink, 0 keep, +1 grow."""
    kinds = [(-1 if g < 1 / KEEP_BAND else (1 if g > KEEP_BAND else 0)) for g in gains]
    runs: list[tuple[int, int, int]] = []
    for i, kind in enumerate(kinds):
        if runs and runs[-1][2] == kind and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i, kind)
        else:
            runs.append((i, i, kind))
    return runs


def sentence(
    gains: Sequence[float | None],
    overall: float,
    *,
    predicted: float | None = None,
    weight_scale: float | None = None,
    rms_dphi: float | None = None,
    collapse_layer: int | None = None,
) -> str:
    """Sum a chain-rule walk up in one or two sentences.

    Args:
        gains: Per-transition gains in forward order (``gains[l]``: from layer l+1 back to
            layer l); ``None`` where unknown.
        overall: The gradient ratio first layer / last layer.
        predicted: The chain-rule product, to quote next to ``overall``.
        weight_scale: Typical weight scale, to name the cause.
        rms_dphi: Typical RMS activation derivative, to name the cause.
        collapse_layer: Index where the gradient fell below ``COLLAPSE_RATIO``.

    Example:
        >>> first, second = sentence([0.2] * 12, 0.2**12).split(": ")
        >>> first
        'Going back from layer 13 to layer 1, layers 2-13 each multiply the gradient by about 0.2'
        >>> second
        'after 12 layers 4e-09 of it is left.'
    """
    n = len(gains)
    known = [(i, g) for i, g in enumerate(gains) if g is not None and g > 0 and math.isfinite(g)]
    if n == 0 or not known:
        return "There is only one layer with a gradient: nothing to walk through."
    head = f"Going back from layer {n + 1} to layer 1, "
    runs = _runs([g for _, g in known])
    longest = max(runs, key=lambda r: r[1] - r[0])
    a, b = known[longest[0]][0], known[longest[1]][0]
    run_gains = [g for i, g in known if a <= i <= b]
    typical = math.exp(sum(math.log(g) for g in run_gains) / len(run_gains))
    covers_most = (b - a + 1) >= 0.6 * n
    if covers_most and len(run_gains) > 1:
        body = f"layers {a + 2}-{b + 2} each multiply the gradient by about {fmt(typical)}"
    elif covers_most:
        body = f"layer {a + 2} multiplies the gradient by {fmt(typical)}"
    else:
        lo_i, lo = min(known, key=lambda t: t[1])
        hi_i, hi = max(known, key=lambda t: t[1])
        body = (
            f"the factor each layer multiplies the gradient by varies from {fmt(lo)} "
            f"(layer {lo_i + 2}) to {fmt(hi)} (layer {hi_i + 2})"
        )
    if overall < 1 / KEEP_BAND:
        tail = f"after {n} layers {fmt(overall)} of it is left"
    elif overall > KEEP_BAND:
        tail = f"after {n} layers it is {fmt(overall)} times larger"
    else:
        tail = f"after {n} layers it keeps its size ({fmt(overall)})"
    text = f"{head}{body}: {tail}"
    if predicted is not None:
        text += f" (the chain rule predicts {fmt(predicted)})"
    text += "."
    if weight_scale is not None and rms_dphi is not None:
        text += (
            f" Each factor is the weight scale (about {fmt(weight_scale)}) times the RMS "
            f"activation derivative (about {fmt(rms_dphi)})."
        )
    if collapse_layer is not None:
        word = "below 1/1000 of" if overall < 1 else "above 1000 times"
        text += f" It is {word} its last-layer size by layer {collapse_layer + 1}."
    return text


def _collapse(ratios: Sequence[float]) -> int | None:
    """The layer nearest the output whose ratio is past COLLAPSE_RATIO (or its inverse)."""
    for i in range(len(ratios) - 1, -1, -1):
        r = ratios[i]
        if math.isfinite(r) and (r < COLLAPSE_RATIO or r > 1 / COLLAPSE_RATIO):
            return i
    return None


def _geo_mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


# --------------------------------------------------------------------------- model
def explain(
    source: torch.nn.Module | Trace,
    batch: Any = None,
    *,
    loss_fn: Callable[[Any, Any], Any] | None = None,
    step: int | None = None,
    metric: str | None = None,
) -> ChainRuleWalk:
    """Walk the chain rule through a sequential (MLP-like) model on a batch, or a trace.

    With a model, hooks capture each parametrised layer's output ``h_l`` for one forward
    pass; autograd gives ``||dL/dh_l||`` (measured) and ``phi'(h_l)`` (the derivative of the
    next layer's input with respect to ``h_l``). The predicted gain of each layer is
    ``weight scale x RMS phi'`` and their running product is compared with the measured
    ratios. The model's parameters, their ``.grad`` and its mode are left untouched.

    With a :class:`~gradwatch.trace.Trace` (no model), see :func:`explain_trace`.

    Args:
        source: The model, or a recorded trace.
        batch: ``x`` or ``(x, y)``. Without ``y`` the loss is a fixed random projection of
            the output, ``sum(out * r) / B`` with ``r ~ N(0, 1)`` (seed 0), which sends a
            generic gradient back. With ``y`` and no ``loss_fn``: cross-entropy for integer
            targets, mean squared error otherwise.
        loss_fn: ``loss_fn(output, y)``.
        step: Trace only: the training step to walk (default: the first measured one).
        metric: Trace only: ``"out_grad_norm"`` or ``"grad_rms"`` (default: the first of
            these the trace holds).

    Raises:
        ValueError: Without a batch, with fewer than two layers, or when a layer runs twice
            in one forward pass (not a sequential chain).

    Example:
        >>> import torch
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = torch.nn.Sequential(*[m for _ in range(6)
        ...                             for m in (torch.nn.Linear(32, 32), torch.nn.Sigmoid())])
        >>> walk = explain(net, torch.randn(64, 32))
        >>> walk.measured_ratio < 1e-3 and walk.sentence.startswith("Going back")
        True
    """
    import torch

    if not isinstance(source, torch.nn.Module):
        return explain_trace(source, step=step, metric=metric)
    if batch is None:
        raise ValueError("explain(model, batch) needs a batch: pass x or (x, y)")
    return _explain_model(source, batch, loss_fn)


def _split_batch(batch: Any) -> tuple[torch.Tensor, Any]:
    import torch

    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    raise TypeError(f"batch must be a tensor x or a tuple (x, y), got {type(batch).__name__}")


def _loss(out: torch.Tensor, y: Any, loss_fn: Callable[[Any, Any], Any] | None) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    if loss_fn is not None:
        if y is None:
            raise ValueError("loss_fn was given but the batch has no target: pass (x, y)")
        return loss_fn(out, y)
    if y is None:
        gen = torch.Generator(device="cpu").manual_seed(0)
        r = torch.randn(out.shape, generator=gen, dtype=out.dtype).to(out.device)
        return (out * r).sum() / out.shape[0]
    if not y.is_floating_point() and out.dim() == 2:
        return F.cross_entropy(out, y)
    return F.mse_loss(out, y.to(out.dtype))


def _weight_scale(module: torch.nn.Module) -> float | None:
    import torch

    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() < 2:
        return None
    # E||W^T u||^2 = ||W||_F^2 / fan_out * ||u||^2 for u independent of W: the RMS gain.
    w64 = w.detach().double()
    return float(w64.norm() / math.sqrt(w.shape[0]))


def _explain_model(
    model: torch.nn.Module, batch: Any, loss_fn: Callable[[Any, Any], Any] | None
) -> ChainRuleWalk:
    import torch

    x, y = _split_batch(batch)
    layers = [
        (name, mod)
        for name, mod in model.named_modules()
        if any(True for _ in mod.parameters(recurse=False))
    ]
    outs: dict[int, torch.Tensor] = {}
    ins: dict[int, torch.Tensor] = {}
    order: list[int] = []

    def pre_hook(i: int) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            if args and isinstance(args[0], torch.Tensor) and i not in ins:
                ins[i] = args[0]

        return hook

    def post_hook(i: int) -> Callable[..., Any]:
        def hook(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            if not isinstance(output, torch.Tensor):
                return None
            if i in outs:
                raise ValueError(
                    f"layer {layers[i][0]!r} ran twice in one forward pass; explain() walks "
                    "sequential models where each layer runs once"
                )
            outs[i] = output
            order.append(i)
            # Hand the rest of the model a copy, so an in-place activation (ReLU(inplace=
            # True)) cannot overwrite the tensor we differentiate against. Same values.
            return output.clone()

        return hook

    handles = []
    try:
        for i, (_, mod) in enumerate(layers):
            handles.append(mod.register_forward_pre_hook(pre_hook(i)))
            handles.append(mod.register_forward_hook(post_hook(i)))
        xx = x.detach().requires_grad_(True) if x.is_floating_point() else x
        with torch.enable_grad():
            out = model(xx)
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"explain needs a model returning a tensor, got {type(out)}")
            loss = _loss(out, y, loss_fn)
    finally:
        for h in handles:
            h.remove()
    if len(order) < 2:
        raise ValueError(
            f"explain needs at least two layers with parameters in the forward pass; "
            f"found {len(order)}"
        )
    hs = [outs[i] for i in order]
    with torch.enable_grad():
        grads = torch.autograd.grad(loss, hs, retain_graph=True, allow_unused=True)
        norms = [float(g.detach().double().norm()) if g is not None else math.nan for g in grads]
        n = len(order)
        scales: list[float | None] = [None] * n
        rms: list[float | None] = [None] * n
        mabs: list[float | None] = [None] * n
        chain: list[bool | None] = [None] * n
        for li in range(n - 1):
            nxt = order[li + 1]
            scales[li] = _weight_scale(layers[nxt][1])
            a = ins.get(nxt)
            h = hs[li]
            if a is not None and a.numel() == h.numel() and a.requires_grad:
                (d,) = torch.autograd.grad(a.sum(), h, retain_graph=True, allow_unused=True)
                if d is not None:
                    d64 = d.detach().double()
                    rms[li] = float(d64.square().mean().sqrt())
                    mabs[li] = float(d64.abs().mean())
            g_next, g_here = grads[li + 1], grads[li]
            if g_next is not None and g_here is not None:
                (back,) = torch.autograd.grad(
                    hs[li + 1], h, g_next, retain_graph=True, allow_unused=True
                )
                if back is not None:
                    diff = float((back.detach().double() - g_here.detach().double()).norm())
                    chain[li] = diff <= CHAIN_RTOL * max(norms[li], 1e-300)
                else:
                    chain[li] = False
    pred_gains: list[float | None] = [
        s * r if s is not None and r is not None else None for s, r in zip(scales, rms, strict=True)
    ]
    rows = _rows(
        [layers[i][0] for i in order],
        norms,
        weight_scale=scales,
        rms=rms,
        mabs=mabs,
        pred=pred_gains,
        chain=chain,
    )
    measured = rows[0].measured_ratio
    predicted = rows[0].predicted_ratio
    collapse = _collapse([r.measured_ratio for r in rows])
    # The sentence quotes the chain-rule factors when every one is known, else the measured.
    walked = pred_gains[:-1]
    if any(p is None for p in walked):
        walked = [r.measured_gain for r in rows[:-1]]
    text = sentence(
        walked,
        measured,
        predicted=predicted,
        weight_scale=_geo_mean(scales[:-1]),
        rms_dphi=_geo_mean(rms[:-1]),
        collapse_layer=collapse,
    )
    return ChainRuleWalk(
        source="model",
        metric="dL/dh",
        step=None,
        rows=rows,
        measured_ratio=measured,
        predicted_ratio=predicted,
        collapse_layer=collapse,
        sentence=text,
    )


def _rows(
    names: Sequence[str],
    norms: Sequence[float],
    *,
    weight_scale: Sequence[float | None] | None = None,
    rms: Sequence[float | None] | None = None,
    mabs: Sequence[float | None] | None = None,
    pred: Sequence[float | None] | None = None,
    chain: Sequence[bool | None] | None = None,
) -> tuple[LayerGain, ...]:
    n = len(names)
    last = norms[-1]
    rows: list[LayerGain] = []
    running: float | None = 1.0
    products: list[float | None] = [None] * n
    products[n - 1] = 1.0
    for li in range(n - 2, -1, -1):
        p = pred[li] if pred is not None else None
        running = running * p if (running is not None and p is not None) else None
        products[li] = running
    for li in range(n):
        nxt = norms[li + 1] if li + 1 < n else math.nan
        gain = norms[li] / nxt if li + 1 < n and nxt > 0 and math.isfinite(nxt) else None
        if gain is not None and not math.isfinite(gain):
            gain = None
        rows.append(
            LayerGain(
                index=li,
                name=names[li],
                grad_norm=norms[li],
                measured_gain=gain,
                measured_ratio=norms[li] / last if last > 0 else math.nan,
                weight_scale=weight_scale[li] if weight_scale is not None else None,
                rms_dphi=rms[li] if rms is not None else None,
                mean_abs_dphi=mabs[li] if mabs is not None else None,
                predicted_gain=pred[li] if pred is not None else None,
                predicted_ratio=products[li] if pred is not None else None,
                chain=chain[li] if chain is not None else None,
            )
        )
    return tuple(rows)


# --------------------------------------------------------------------------- trace
def explain_trace(
    trace: Trace, *, step: int | None = None, metric: str | None = None
) -> ChainRuleWalk:
    """Walk the recorded gradient profile of a trace through depth (no model needed).

    Uses ``out_grad_norm`` (``||dL/d output||`` per layer, recorded on sampled steps) when
    the trace has it, else ``grad_rms`` (per-parameter RMS of the weight gradient, every
    step; its layer-to-layer factor also carries the activations' scale). The per-layer
    factor is the ratio of consecutive layers, the running product the ratio to the last
    layer. Layers with no value at that step are left out.

    Args:
        trace: A recorded trace (``gw.load(run_dir)``).
        step: Training step to walk; the nearest measured step is used. Default: the first
            measured step (the network at initialisation, when recording started there).
        metric: ``"out_grad_norm"`` or ``"grad_rms"``.

    Raises:
        KeyError: When the trace holds neither metric.
        ValueError: When fewer than two layers have a value at that step.

    Example:
        >>> import numpy as np
        >>> from gradwatch.trace import Trace
        >>> t = Trace.from_arrays(["a", "b", "c"], steps=[0],
        ...                       metrics={"out_grad_norm": [[0.01, 0.1, 1.0]]})
        >>> explain_trace(t).rows[0].measured_ratio
        0.01
    """
    if metric is None:
        candidates = [m for m in ("out_grad_norm", "grad_rms") if trace.has_metric(m)]
        candidates = [m for m in candidates if len(trace.measured(m)[0])]
        if not candidates:
            raise KeyError(
                "this trace has no out_grad_norm or grad_rms values to walk; it has "
                f"{trace.metrics}"
            )
        metric = candidates[0]
    if metric not in ("out_grad_norm", "grad_rms", "grad_norm"):
        raise ValueError(
            f"metric must be 'out_grad_norm', 'grad_rms' or 'grad_norm', got {metric!r}"
        )
    steps, mat = trace.measured(metric)
    if len(steps) == 0:
        raise ValueError(f"metric {metric!r} was never measured in this trace")
    row = 0 if step is None else int(np.argmin(np.abs(steps - int(step))))
    values = mat[row]
    keep = [i for i, v in enumerate(values) if math.isfinite(v)]
    if len(keep) < 2:
        raise ValueError(
            f"only {len(keep)} layer(s) have a {metric} value at step {int(steps[row])}; "
            "the walk needs two or more"
        )
    names = [trace.layers[i].name for i in keep]
    norms = [float(values[i]) for i in keep]
    rows = _with_between_inputs(_rows(names, norms), trace, int(steps[row]), keep)
    measured = rows[0].measured_ratio
    collapse = _collapse([r.measured_ratio for r in rows])
    text = sentence([r.measured_gain for r in rows[:-1]], measured, collapse_layer=collapse)
    return ChainRuleWalk(
        source="trace",
        metric=metric,
        step=int(steps[row]),
        rows=rows,
        measured_ratio=measured,
        predicted_ratio=None,
        collapse_layer=collapse,
        sentence=text,
    )


def _with_between_inputs(
    rows: tuple[LayerGain, ...], trace: Trace, step: int, columns: Sequence[int]
) -> tuple[LayerGain, ...]:
    """``rows`` with ``between_inputs`` from the trace's measured step nearest ``step``."""
    if not trace.has_metric("act_between_inputs"):
        return rows
    steps, share = trace.measured("act_between_inputs")
    if not len(steps):
        return rows
    values = share[int(np.argmin(np.abs(steps - step)))]
    return tuple(
        replace(r, between_inputs=float(values[c])) if math.isfinite(values[c]) else r
        for r, c in zip(rows, columns, strict=True)
    )
