"""The thresholds every rule uses, with where each default comes from.

One frozen dataclass per rule, grouped in :class:`Thresholds`. Every default says its source
in a comment: a paper, a peer's default (SageMaker Debugger's built-in rules), or a
measurement on the diagnosis corpus (``benchmarks/diagnosis_corpus.py``, results in
``docs/diagnosis.md``). A "window" counts recorded rows (steps where the metric was
measured), not training steps, so it means the same thing whatever ``every`` and
``sample_every`` were.

Example:
    >>> from gradwatch.diagnosis import Thresholds
    >>> th = Thresholds.from_overrides({"vanishing_gradient": {"warn_decades": 3.0}})
    >>> th.vanishing_gradient.warn_decades
    3.0
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class VanishingGradientThresholds:
    """When the gradient shrinks from the last layers to the first."""

    # Decades (log10) grad_rms rises from the first to the last layer (least-squares trend along
    # depth). Measured on the corpus (docs/diagnosis.md): healthy models stay within +-1.3
    # decades, the 20-layer sigmoid MLP shows 4.1-4.7; 2 decades (100x) has margin both sides.
    warn_decades: float = 2.0
    # 10^4: the first layers learn 10,000x slower than the last at the same learning rate;
    # Glorot & Bengio (2010, fig. 7) show gradients this far apart only in nets that fail to
    # train. Chosen with the corpus measurement above.
    critical_decades: float = 4.0
    # SageMaker Debugger's VanishingGradient default: mean |g| < 1e-7. grad_rms >= mean |g|,
    # so grad_rms below it implies SageMaker's test holds too.
    abs_floor: float = 1e-7
    # Rows per window: the contrast must hold for the window's median, not a single step.
    # Our choice (10 steps at every=1), also SageMaker's LossNotDecreasing num_steps default.
    window: int = 10
    # Fewer (non-normalisation) layers than this cannot vanish along depth in a useful sense.
    min_layers: int = 3


@dataclass(frozen=True)
class ExplodingGradientThresholds:
    """When the gradient grows along depth or over steps."""

    # Same depth trend as vanishing, reversed (first layers larger than last); same sources.
    # Measured: the 20-layer tanh MLP with weights N(0, 16/fan_in) shows 2.7-3.8 decades.
    warn_decades: float = 2.0
    critical_decades: float = 4.0
    min_layers: int = 3
    # Modified z-score 0.6745 (x - median) / MAD above 3.5 marks an outlier: Iglewicz &
    # Hoaglin (1993), "How to Detect and Handle Outliers". Applied to log10 global grad norm.
    spike_z: float = 3.5
    # ... and the spike must also be >= 10x the trailing median (a z-score alone fires on
    # tiny wiggles when the MAD is ~0). Measured: healthy corpus runs peak below 4x.
    spike_ratio: float = 10.0
    # 1000x above the trailing median: an overflow is a few such steps away (our choice).
    critical_spike_ratio: float = 1000.0
    # Rows of the trailing window the median/MAD come from (our choice, ~2 windows of 10).
    trailing: int = 20
    # Sustained growth: window medians of the global norm rising this many decades from their
    # minimum to the last window, with each of the last `rising_windows` windows higher.
    growth_decades: float = 2.0
    rising_windows: int = 3
    window: int = 10


@dataclass(frozen=True)
class NonfiniteGradientThresholds:
    """When NaN/Inf gradients are a failure, and when they are GradScaler calibration."""

    # torch.cuda.amp.GradScaler starts at scale 2^16 and halves on each overflow: 16 skipped
    # steps in a row bring it to 1, so a longer run of skips is not calibration.
    max_consecutive_skipped: int = 16
    # GradScaler grows the scale every 2000 good steps and may skip once after; more than 5%
    # skipped steps overall is far above that (our choice, from GradScaler's growth_interval).
    max_skipped_fraction: float = 0.05


@dataclass(frozen=True)
class StalledEarlyLayersThresholds:
    """When early layers' parameters move far less than late layers'."""

    # Decades the (log) median update ratio rises from the first to the last layer (trend along
    # depth). 2 decades = early layers change 100x slower, so need 100x the steps to move as
    # far. Measured on the corpus: see docs/diagnosis.md (healthy models stay near 0).
    warn_decades: float = 2.0
    critical_decades: float = 4.0
    min_layers: int = 3
    # Last sampled rows used (sustained, at the end of the run: a stall that resolved is not one).
    window: int = 10


@dataclass(frozen=True)
class CollapsingWeightsThresholds:
    """When weight norms drift toward zero."""

    # Last-window median weight norm below this fraction of the first-window median. Measured:
    # healthy corpus layers keep >= 0.9 of their initial norm; strong weight decay ends < 0.3.
    warn_fraction: float = 0.5
    critical_fraction: float = 0.1
    # "Drifting": at least this fraction of consecutive window medians must fall (our choice:
    # a steady fall, not one jump).
    min_falling_fraction: float = 0.7
    # The run is split into this many equal spans (our choice: 10 medians show a trend).
    windows: int = 10
    # Fewer rows (spans) than this cannot show a drift.
    min_windows: int = 3


@dataclass(frozen=True)
class LossPlateauThresholds:
    """When the loss stops improving early."""

    # A plateau starts at the first window that no later window improves on by this fraction
    # (of its own loss). 5%: above the window-median noise of batch-64 losses (~1-3%
    # measured on the corpus), far below what a learning model gains (our choice).
    min_relative_improvement: float = 0.05
    # "Early": the plateau starts within this fraction of the run (our choice: half, so a
    # run that converged late, as it should, is not flagged).
    early_fraction: float = 0.5
    window: int = 10
    # The plateau must last this many windows, and the run have at least this many.
    min_windows: int = 3


@dataclass(frozen=True)
class SaturatedActivationThresholds:
    """When sigmoid/tanh units sit at their bounds."""

    # SageMaker Debugger SaturatedActivation: threshold_layer = 50 (% of a layer's units).
    warn_fraction: float = 0.5
    # 90%: the layer passes almost no gradient (our choice).
    critical_fraction: float = 0.9
    # Median over the last sampled rows: saturation that persists, not one batch.
    window: int = 10


@dataclass(frozen=True)
class DeadUnitsThresholds:
    """When ReLU-like units never activate."""

    # SageMaker Debugger DeadRelu: threshold_layer = 50 (% of a layer's units).
    warn_fraction: float = 0.5
    # 99%: the layer passes (almost) no gradient at all (our choice).
    critical_fraction: float = 0.99
    window: int = 10


@dataclass(frozen=True)
class PoorInitializationThresholds:
    """When the starting weights scale the signal away from unit variance."""

    # Sampled rows at the start that are read (the first few measurements).
    first_rows: int = 3
    # SageMaker Debugger PoorWeightInitialization: threshold = 10 (ratio of the largest to the
    # smallest activation variance across layers); 10 in variance = sqrt(10) in std.
    max_variance_ratio: float = 10.0
    # Activation std this many decades from 1 in any layer (10x or 1/10). Glorot & Bengio
    # (2010) aim for unit variance; a factor of 10 is far from it (our choice).
    std_decades: float = 1.0
    # Weight std vs what the following activation needs (gain / sqrt(fan_in), the PyTorch
    # torch.nn.init.calculate_gain convention; He et al. 2015; Glorot & Bengio 2010): a layer
    # off by more than 2x is mis-scaled ...
    weight_scale_factor: float = 2.0
    # ... and fires when the mis-scaled layers compound to 10x over depth (our choice).
    compound_decades: float = 1.0
    # Per-layer backward gain of ||dL/dh|| (RMS per unit) farther than 2x from 1 on average
    # over depth (our choice, matching weight_scale_factor).
    gain_factor: float = 2.0
    min_layers: int = 3


@dataclass(frozen=True)
class ShortMemoryThresholds:
    """When a recurrent net's gradient forgets distant inputs."""

    # Decades the fitted gradient falls from the last input to the first. 2 decades: the first
    # input gets 1% of the gradient of the last (our choice; Bengio et al. 1994 and Pascanu et
    # al. 2013 describe the exponential decay, not a cut-off).
    warn_decades: float = 2.0
    critical_decades: float = 5.0
    # The fit must explain the profile: R^2 of log-norm vs distance (our choice).
    min_r2: float = 0.7
    # The horizon reported is the distance at which the gradient falls by this factor.
    horizon_factor: float = 100.0
    window: int = 10
    min_length: int = 4


@dataclass(frozen=True)
class UnstableUpdatesThresholds:
    """When update ratios ||dtheta|| / ||theta|| are far from the ~1e-3 of healthy training."""

    # CS231n (Karpathy, "Neural Networks Part 3") puts a healthy ratio near 1e-3. 100x that
    # is a learning rate far too high for the layer (our choice; measured: healthy corpus
    # runs stay below 0.03).
    warn_ratio: float = 0.1
    # SageMaker Debugger WeightUpdateRatio: large_threshold = 10.
    critical_ratio: float = 10.0
    # SageMaker Debugger WeightUpdateRatio: small_threshold = 1e-8 (the weights do not move).
    small_ratio: float = 1e-8
    window: int = 10


@dataclass(frozen=True)
class Thresholds:
    """All rule thresholds, one group per rule id.

    Build a variant with :meth:`from_overrides` (a dict) or ``dataclasses.replace``.

    Example:
        >>> th = Thresholds.from_overrides({"dead_units.warn_fraction": 0.3})
        >>> th.dead_units.warn_fraction
        0.3
    """

    vanishing_gradient: VanishingGradientThresholds = field(
        default_factory=VanishingGradientThresholds
    )
    exploding_gradient: ExplodingGradientThresholds = field(
        default_factory=ExplodingGradientThresholds
    )
    nonfinite_gradient: NonfiniteGradientThresholds = field(
        default_factory=NonfiniteGradientThresholds
    )
    stalled_early_layers: StalledEarlyLayersThresholds = field(
        default_factory=StalledEarlyLayersThresholds
    )
    collapsing_weights: CollapsingWeightsThresholds = field(
        default_factory=CollapsingWeightsThresholds
    )
    loss_plateau: LossPlateauThresholds = field(default_factory=LossPlateauThresholds)
    saturated_activation: SaturatedActivationThresholds = field(
        default_factory=SaturatedActivationThresholds
    )
    dead_units: DeadUnitsThresholds = field(default_factory=DeadUnitsThresholds)
    poor_initialization: PoorInitializationThresholds = field(
        default_factory=PoorInitializationThresholds
    )
    short_memory: ShortMemoryThresholds = field(default_factory=ShortMemoryThresholds)
    unstable_updates: UnstableUpdatesThresholds = field(default_factory=UnstableUpdatesThresholds)

    def __post_init__(self) -> None:
        for group in fields(self):
            _validate_group(group.name, getattr(self, group.name))

    @classmethod
    def from_overrides(
        cls, overrides: Mapping[str, Any], base: Thresholds | None = None
    ) -> Thresholds:
        """A copy of ``base`` (default thresholds) with some values replaced.

        Args:
            overrides: Either nested (``{"dead_units": {"warn_fraction": 0.3}}``) or dotted
                (``{"dead_units.warn_fraction": 0.3}``) keys.
            base: Thresholds to start from; the defaults when ``None``.

        Raises:
            ValueError: On an unknown rule or threshold name (the message lists valid ones)
                or a value out of range.
            TypeError: When a value is not a number.
        """
        base = base if base is not None else cls()
        per_rule: dict[str, dict[str, Any]] = {}
        for key, value in overrides.items():
            if not isinstance(key, str):
                raise TypeError(f"threshold override keys must be strings, got {key!r}")
            if "." in key:
                rule, name = key.split(".", 1)
                per_rule.setdefault(_check_rule(rule), {})[name] = value
            elif isinstance(value, Mapping):
                per_rule.setdefault(_check_rule(key), {}).update(value)
            else:
                raise ValueError(
                    f"threshold override {key!r} needs a threshold name: pass "
                    f"{{'{key}': {{'<name>': value}}}} or '{key}.<name>'. Valid rules: "
                    f"{sorted(f.name for f in fields(cls))}"
                )
        groups: dict[str, Any] = {}
        for rule, values in per_rule.items():
            group = getattr(base, rule)
            valid = {f.name: f for f in fields(group)}
            for name, value in values.items():
                if name not in valid:
                    raise ValueError(
                        f"unknown threshold {rule}.{name!s}; valid thresholds of {rule!r} are "
                        f"{sorted(valid)}"
                    )
                want_int = valid[name].type in ("int", int)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TypeError(
                        f"threshold {rule}.{name} must be a number, got {value!r} "
                        f"({type(value).__name__})"
                    )
                if want_int and not float(value).is_integer():
                    raise TypeError(f"threshold {rule}.{name} must be an integer, got {value!r}")
            cast = {
                n: int(v) if valid[n].type in ("int", int) else float(v) for n, v in values.items()
            }
            groups[rule] = dataclasses.replace(group, **cast)
        return dataclasses.replace(base, **groups)

    def to_json(self) -> dict[str, dict[str, float | int]]:
        """All thresholds as a nested plain dict (rule id -> name -> value)."""
        return {g.name: dataclasses.asdict(getattr(self, g.name)) for g in fields(self)}


def _check_rule(rule: str) -> str:
    valid = [f.name for f in fields(Thresholds)]
    if rule not in valid:
        raise ValueError(f"unknown rule {rule!r} in threshold overrides; valid rules are {valid}")
    return rule


# Counts of rows or windows: zero would leave a rule nothing to read.
_AT_LEAST_ONE = ("window", "windows", "trailing", "first_rows", "min_windows", "rising_windows")


def _validate_group(rule: str, group: Any) -> None:
    """Reject values no rule can use (negative windows, NaN thresholds)."""
    for f in fields(group):
        value = getattr(group, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"threshold {rule}.{f.name} must be finite, got {value!r}")
        if value < 0:
            raise ValueError(f"threshold {rule}.{f.name} must be >= 0, got {value!r}")
        if f.name in (
            "window",
            "trailing",
            "first_rows",
            "min_windows",
            "rising_windows",
            "windows",
        ) and (value < 1):
            raise ValueError(f"threshold {rule}.{f.name} must be >= 1, got {value!r}")


def resolve_thresholds(thresholds: Thresholds | Mapping[str, Any] | None) -> Thresholds:
    """The :class:`Thresholds` to use from what a caller passed to ``diagnose``."""
    if thresholds is None:
        return Thresholds()
    if isinstance(thresholds, Thresholds):
        return thresholds
    if isinstance(thresholds, Mapping):
        return Thresholds.from_overrides(thresholds)
    raise TypeError(
        "Expected argument `thresholds` to be a Thresholds, a dict of overrides or None, but "
        f"got {type(thresholds).__name__}. Pass e.g. {{'dead_units.warn_fraction': 0.3}}."
    )
