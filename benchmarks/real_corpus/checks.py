"""Independent checks: is a case really healthy or really broken, judged without gradwatch."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from gradwatch.diagnosis import Finding
from gradwatch.trace import Trace

from .data import digit_vectors, stdlib_bytes
from .models import RNNModel, Setup


# ---------------------------------------------------------------------- independent checks
@dataclass
class Run:
    """One recorded training run: the loop's own losses and gradient checks, and gradwatch's."""

    setup: Setup
    losses: list[float]  # the loop's loss.item() per step
    grads_finite: list[bool]  # the loop's own check: every gradient entry finite at the step
    trace: Trace
    findings: list[Finding]
    seconds: float


#: (verdict, what was measured): computed from the loop and probes, never from gradwatch.
Check = Callable[[Run], tuple[bool, str]]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def loss_change(run: Run) -> str:
    """The run's loss as the sweeps' cells give it: its first 5 steps' mean -> its last
    20's ("nan" when that is not finite)."""
    first, last = _mean(run.losses[:5]), _mean(run.losses[-20:])
    return f"{first:.3g} -> {last:.3g}" if math.isfinite(last) else f"{first:.3g} -> nan"


def learns(factor: float = 0.7, window: int = 20) -> Check:
    """The last ``window`` steps' mean loss is below ``factor`` x the first 5 steps' mean."""

    def check(run: Run) -> tuple[bool, str]:
        first, last = _mean(run.losses[:5]), _mean(run.losses[-window:])
        ok = math.isfinite(last) and last < factor * first
        return ok, f"loss {first:.3g} -> {last:.3g} (learns if < {factor} x start)"

    return check


@cache
def unigram_entropy() -> float:
    """Entropy (nats) of the stdlib bytes' frequencies: the loss of a context-blind LM."""
    counts = torch.bincount(stdlib_bytes(), minlength=256).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def no_context_learned(window: int = 20) -> Check:
    """A byte LM's final loss stays at (>= 0.95 x) the unigram entropy, or is not finite."""

    def check(run: Run) -> tuple[bool, str]:
        last, floor = _mean(run.losses[-window:]), 0.95 * unigram_entropy()
        ok = not math.isfinite(last) or last >= floor
        return ok, f"final loss {last:.3g} vs 0.95 x unigram entropy {floor:.3g}"

    return check


def at_chance(classes: int, window: int = 20) -> Check:
    """A classifier's final loss stays at (>= 0.95 x) ln(classes), or is not finite."""

    def check(run: Run) -> tuple[bool, str]:
        last, chance = _mean(run.losses[-window:]), math.log(classes)
        ok = not math.isfinite(last) or last >= 0.95 * chance
        return ok, f"final loss {last:.3g} vs chance ln({classes}) = {chance:.3g}"

    return check


def barely_learned(classes: int, share: float = 0.5, window: int = 20) -> Check:
    """A classifier's final loss stays above ``share`` x ln(classes), or is not finite: it
    learned little of what its healthy recipe learns (the digits ResNet ends near 0.03).

    For a run broken early that may creep back later, where :func:`at_chance` would depend
    on the machine: HF ResNet at SGD 5 ended at 2.46 on an Intel Xeon and at 1.98 on an AMD
    EPYC (the same seed; chance 2.30), half of chance or more on both.
    """

    def check(run: Run) -> tuple[bool, str]:
        last, chance = _mean(run.losses[-window:]), math.log(classes)
        ok = not math.isfinite(last) or last >= share * chance
        return ok, f"final loss {last:.3g} vs {share:g} x chance ln({classes}) = {chance:.3g}"

    return check


def loss_spikes(factor: float, within: int) -> Check:
    """Within the first ``within`` steps the loss reaches ``factor`` x its first step's."""

    def check(run: Run) -> tuple[bool, str]:
        first, peak = run.losses[0], max(run.losses[:within])
        ok = not math.isfinite(peak) or peak >= factor * first
        return ok, f"loss {first:.3g} at step 0, up to {peak:.3g} in the first {within} steps"

    return check


def goes_nonfinite() -> Check:
    """Some step's gradient has a NaN/inf entry (the loop's own ``isfinite`` check)."""

    def check(run: Run) -> tuple[bool, str]:
        bad = [i for i, ok in enumerate(run.grads_finite) if not ok]
        first = bad[0] if bad else None
        return bool(bad), f"non-finite gradients at {len(bad)} steps (first: {first})"

    return check


def stops_learning(after: int, window: int = 20, factor: float = 0.98) -> Check:
    """The last ``window`` steps' mean loss is not ``factor`` x below the mean of the
    ``window`` steps up to step ``after``: the loss stopped falling after that step."""

    def check(run: Run) -> tuple[bool, str]:
        then, last = _mean(run.losses[after - window : after]), _mean(run.losses[-window:])
        ok = not math.isfinite(last) or last >= factor * then
        return ok, f"loss {then:.3g} by step {after}, {last:.3g} at the end"

    return check


def climbs_back(factor: float = 1.1, window: int = 20) -> Check:
    """The last ``window`` steps' mean loss is ``factor`` x (or more) the lowest mean of any
    ``window`` consecutive steps before: the loss climbed back from its best."""

    def check(run: Run) -> tuple[bool, str]:
        means = [_mean(run.losses[i : i + window]) for i in range(len(run.losses) - window + 1)]
        best, last = min(means), means[-1]
        ok = not math.isfinite(last) or last >= factor * best
        return ok, f"best {window}-step mean loss {best:.3g}, {last:.3g} at the end"

    return check


def norm_gains_unchanged() -> Check:
    """Every gain of the model's normalisation layers (classes named ``...Norm``) is still
    exactly 1, its initial value, after training: those weights never moved."""

    def check(run: Run) -> tuple[bool, str]:
        gains = [
            m.weight.detach()
            for m in run.setup.model.modules()
            if type(m).__name__.endswith("Norm") and isinstance(m.weight, torch.Tensor)
        ]
        moved = sum(bool((g != 1).any()) for g in gains)
        return bool(gains) and moved == 0, f"{moved} of {len(gains)} norm layers' gains moved"

    return check


def norm_stats_unchanged() -> Check:
    """Every BatchNorm layer's running statistics are still their initial mean 0 and variance
    1 after training: it never normalised with the batch's (the model trained in eval
    mode)."""

    def check(run: Run) -> tuple[bool, str]:
        norms = [
            m
            for m in run.setup.model.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
        moved = sum(bool((m.running_mean != 0).any() or (m.running_var != 1).any()) for m in norms)
        unchanged = bool(norms) and moved == 0
        return unchanged, f"{moved} of {len(norms)} BatchNorm layers' statistics moved"

    return check


def never_below_probability_floor(classes: int) -> Check:
    """No step's loss went below ``log(e + classes - 1) - 1``, the lowest cross-entropy of
    outputs that are already probabilities (a softmax applied twice); a model trained on
    logits goes far below it (resnet_digits: 0.03)."""

    def check(run: Run) -> tuple[bool, str]:
        floor = math.log(math.e + classes - 1) - 1
        lowest = min(run.losses)
        return lowest >= floor, f"lowest loss {lowest:.3g}, floor {floor:.4g}"

    return check


def goes_below_zero() -> Check:
    """Some step's loss went below 0, which a negative log-likelihood of log-probabilities
    (each <= 0) never does: the loss was not given log-probabilities. A model trained on
    log-softmax outputs stays above 0 (gpt2_lm: lowest 1.9)."""

    def check(run: Run) -> tuple[bool, str]:
        lowest = min(run.losses)
        return lowest < 0.0, f"lowest loss {lowest:.3g}"

    return check


def both(a: Check, b: Check) -> Check:
    """Both checks hold; the detail lists both."""

    def check(run: Run) -> tuple[bool, str]:
        (ok_a, da), (ok_b, db) = a(run), b(run)
        return ok_a and ok_b, f"{da}; {db}"

    return check


def dead_relu_probe(threshold: float = 0.9, samples: int = 512) -> Check:
    """Fraction of ReLU units never positive over ``samples`` digits (own forward hooks)."""

    def check(run: Run) -> tuple[bool, str]:
        x, _ = digit_vectors(seed=1234, batch=samples)(0)
        seen: list[torch.Tensor] = []
        relus = [m for m in run.setup.model.modules() if isinstance(m, nn.ReLU)]
        handles = [
            m.register_forward_hook(lambda _m, _i, out: seen.append((out > 0).any(0)))
            for m in relus
        ]
        try:
            with torch.no_grad():
                run.setup.model(x)
        finally:
            for h in handles:
                h.remove()
        dead = float(torch.cat([~alive for alive in seen]).float().mean())
        return dead >= threshold, f"{dead:.1%} of ReLU units never fire on {samples} digits"

    return check


def memory_probe(distance: int = 50, decades: float = 4.0) -> Check:
    """Gradient of the LAST position's loss w.r.t. the input ``distance`` steps back.

    Autograd on a fresh (T, B) window: ``||dL_T/de_t||`` for the embedded inputs e_t; broken
    when the gradient at ``distance`` steps back is ``decades`` below the last input's.
    """

    def check(run: Run) -> tuple[bool, str]:
        model = run.setup.model
        assert isinstance(model, RNNModel)
        x, y = run.setup.batches(10_000)  # (T, B)
        emb = model.encoder(x).detach().requires_grad_(True)
        out, _ = model.rnn(emb)
        F.cross_entropy(model.decoder(out[-1]), y[-1]).backward()
        assert emb.grad is not None
        norms = emb.grad.norm(dim=(1, 2)).double()  # (T,)
        t = len(norms) - 1
        near, far = float(norms[t]), float(norms[t - distance])
        fall = math.inf if far == 0.0 else math.log10(near / far)  # 0: underflowed to zero
        return fall >= decades, (
            f"||dL_last/dx_t|| {near:.2g} at the last input, {far:.2g} {distance} steps back "
            f"({fall:.3g} decades; window {t + 1})"
        )

    return check
