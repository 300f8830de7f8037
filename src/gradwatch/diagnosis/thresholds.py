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

    # Decades (log10) grad_rms rises from the first to the last layer (least-squares trend
    # along depth), as a window median. Measured on the corpus (docs/diagnosis.md): healthy
    # models stay at or below 0.5 decades, the 20-layer sigmoid MLP shows 4.5; 2 decades
    # (100x) leaves a wide margin on both sides.
    warn_decades: float = 2.0
    # 10^4: the first layers learn 10,000x slower than the last at one learning rate (our
    # choice; the corpus sigmoid MLP, which does not learn at all, shows 4.5).
    critical_decades: float = 4.0
    # SageMaker Debugger's VanishingGradient default: mean |g| < 1e-7. grad_rms >= mean |g|,
    # so a grad_rms below it implies SageMaker's test holds too.
    abs_floor: float = 1e-7
    # The floor means "too small to change the weights": SGD moves a weight by lr x g. An
    # adaptive optimizer divides the gradient by its own running scale, so a layer under the
    # floor can move like the others: a width-16 BERT's attention queries and keys start at
    # grad RMS 7e-8 (near-uniform attention) with AdamW update ratios of 0.02-0.03, as every
    # other layer. A floor layer whose recorded update ratio over the same steps is at least
    # moving_ratio, and within moving_decades of the median over the weight layers, is
    # moving: its floor hit is reported, not counted (a hundredth of healthy training's
    # ~1e-3, our choice; SGD on that BERT: 2e-9).
    moving_ratio: float = 1e-5
    # Same as stalled_early_layers.warn_decades: a layer updated 100x slower than the
    # others' median does not move like them.
    moving_decades: float = 2.0
    # A vanishing gradient through norms on the main path whose gains start this many times under
    # their identity, 1 (median over those norms; as poor_initialization's weight_scale_factor), is
    # offered a re-initialisation first: each norm scales the signal down, forward and back, and no
    # skip path or added norm undoes that (HF EfficientNet's BatchNorm gains, N(0, 0.02): loss at
    # chance; init_he, which resets torch's norms, trains it).
    norm_gain_factor: float = 2.0
    # Recorded rows per window: the trend must hold for a window's median, not one step
    # (our choice: 10 steps at every=1, so a 100-step run has 10 windows).
    window: int = 10
    # Fewer weight layers than this have no depth to vanish along (our choice).
    min_layers: int = 3
    # Judged while the model learns: loss windows whose median is at most this fraction of the
    # starting loss are left out (0 = judge every window). A confident model's errors, and so all
    # its gradients, are tiny: issue 12's tiny BERT classifier (loss 0.69 -> 0.001) passed 2 decades
    # of depth contrast and the 1e-7 floor only after its loss collapsed. A tenth of the start is
    # cross-entropy 2.3 -> 0.23 on 10 classes, ~93% of a batch right (our choice: far below where a
    # stuck net sits, e.g. the corpus sigmoid MLP at 2.31 from 2.85).
    finished_loss_fraction: float = 0.1


@dataclass(frozen=True)
class ExplodingGradientThresholds:
    """When the gradient grows along depth or over steps."""

    # The vanishing trend reversed (first layers larger than the last). Measured: healthy
    # corpus models at most 0.66 decades, the 20-layer tanh MLP with weights N(0, 16/fan_in)
    # 3.5; 2 decades sits between.
    warn_decades: float = 2.0
    # Same as vanishing_gradient.critical_decades (our choice, symmetric).
    critical_decades: float = 4.0
    # Same as vanishing_gradient.min_layers.
    min_layers: int = 3
    # Modified z-score 0.6745 (x - median) / MAD above 3.5 marks an outlier: Iglewicz &
    # Hoaglin (1993), "How to Detect and Handle Outliers". Applied to log10 global grad norm.
    spike_z: float = 3.5
    # ... and the spike must also be >= 10x the trailing median (a z-score alone fires on
    # tiny wiggles when the MAD is ~0). Our choice: one order of magnitude.
    spike_ratio: float = 10.0
    # 1000x above the trailing median: an overflow is a few such steps away (our choice).
    critical_spike_ratio: float = 1000.0
    # Fewer spike episodes than this that the loss felt (none critical) are only "info":
    # healthy corpus runs show single jumps of up to 17x over the trailing median (one hard
    # batch), HF RoBERTa under AdamW 1e-3 one run of three (17x, 19x, 13x in consecutive
    # steps: the momentum carries one batch's push), HF ALBERT three of 18-82x after which
    # the loss rose once; repeated felt episodes are not that. Spikes in consecutive rows are
    # one episode; felt: see loss_spike_factor.
    min_spikes: int = 3
    # Rows of the trailing window the median/MAD come from (our choice: 2 windows of 10).
    trailing: int = 20
    # Sustained growth: window medians of the global norm rising this many decades (100x)
    # above their minimum by the last window (our choice, same scale as warn_decades) ...
    growth_decades: float = 2.0
    # ... and rising through each of the last 3 windows: still growing, not a past bump.
    rising_windows: int = 3
    # Rows per window for the growth test (as vanishing_gradient.window).
    window: int = 10
    # The depth evidence and the spikes are judged while the model learns (as
    # vanishing_gradient.finished_loss_fraction): a finished model's gradient comes from its
    # few remaining errors, and a batch holding one is many times the median (HF ResNet on
    # digits, SGD 0.1 for 1500 steps: loss 0.004, 3 jumps of up to 28x).
    finished_loss_fraction: float = 0.1
    # Early blow-ups (the first `trailing` rows, where no trailing median exists yet): a
    # global-norm jump of spike_ratio over the median of the rows before it counts as a spike
    # (info alone) and as a warning when a logged loss among those rows also reaches this
    # multiple of the starting loss. Issue 12: GPT-2 at lr 0.05 went from loss 10.8 to 24 by
    # step 4; healthy corpus runs never exceed their start (our choice: 1.5x, well above the
    # batch-to-batch spread of a freshly initialised net, whose outputs are near uniform).
    # Later spikes: an episode is felt by the loss when the median of the `window` logged
    # losses after it reaches this multiple of the median of the `window` before it (and
    # exceeds every one of them: the batch-to-batch spread is no rise), or a loss from the
    # episode to the end of that window reaches this multiple of the start.
    loss_spike_factor: float = 1.5
    # Gradients nothing zeroed between optimizer steps (recording/zeroing.py: the same .grad
    # tensor, added into exactly once between two consecutive steps) in this share of the
    # pairs of steps the watch compared (one pair every 8 steps) ... (our choice: a loop that
    # forgets zero_grad forgets it at every step)
    unzeroed_share: float = 0.9
    # ... and in at least this many pairs (our choice: three confirmations, seen by step 17;
    # HF GPT-2 never zeroed, AdamW 1e-3: loss 4.57 -> 3.39 by step 30, then 3.97 at 200).
    min_unzeroed_steps: int = 3


@dataclass(frozen=True)
class NonfiniteGradientThresholds:
    """When NaN/Inf gradients are a failure, and when they are GradScaler calibration."""

    # torch.amp.GradScaler starts at scale 2^16 and halves on each overflow: 16 skipped steps
    # in a row bring it to 1, so a longer run of skips is not calibration.
    max_consecutive_skipped: int = 16
    # GradScaler grows its scale every 2000 good steps (growth_interval) and may then skip one:
    # a 5% skip rate after the leading calibration run is 100x that (our choice).
    max_skipped_fraction: float = 0.05


@dataclass(frozen=True)
class StalledEarlyLayersThresholds:
    """When early layers' parameters move far less than late layers'."""

    # Decades the log10 update ratio rises from the first to the last layer (trend along
    # depth): 2 = early layers change 100x slower. Measured: healthy corpus models <= 0.14,
    # the 20-layer sigmoid MLP 4.4.
    warn_decades: float = 2.0
    # Same as vanishing_gradient.critical_decades.
    critical_decades: float = 4.0
    # Same as vanishing_gradient.min_layers.
    min_layers: int = 3
    # Last sampled rows used (100 steps at sample_every=10): a stall that resolved is not one.
    window: int = 10


@dataclass(frozen=True)
class CollapsingWeightsThresholds:
    """When weight norms drift toward zero."""

    # Last-span median weight norm below this fraction of the first span's. Measured: healthy
    # corpus layers end at >= 0.99 of their initial norm; weight decay 0.3 ends at 0.01.
    warn_fraction: float = 0.5
    # A tenth of the initial norm: the layer's signal and gradient are 10x smaller (our choice).
    critical_fraction: float = 0.1
    # "Drifting": at least this fraction of consecutive span medians must fall (our choice:
    # a steady fall, not one jump).
    min_falling_fraction: float = 0.7
    # The run is split into this many equal spans (our choice: 10 medians show a trend).
    windows: int = 10
    # Fewer recorded rows than this cannot show a drift (our choice).
    min_windows: int = 3
    # Judged while the model learns (as vanishing_gradient.finished_loss_fraction): once the
    # loss is at most this fraction of its start, the loss's gradient is tiny and weight
    # decay shrinks the weights unopposed, which costs nothing while the loss stays there.
    # Measured: HF ResNet on digits under the CIFAR recipe (SGD 0.1, momentum 0.9, weight
    # decay 5e-4, 1500 steps) reaches loss 0.003 by step ~150, then its BatchNorm gains and
    # convolutions shrink to 0.49 of their norm; a loss that climbs back is judged again.
    finished_loss_fraction: float = 0.1
    # Logged losses per window for the finished and improving tests (as
    # vanishing_gradient.window).
    loss_window: int = 10
    # A drift while the loss keeps improving is regularisation, told as info: the last
    # judged loss window at least this fraction below the start (as
    # unstable_updates.min_progress) ...
    min_progress: float = 0.1
    # ... and no window giving back more than this share of the progress before it (as
    # unstable_updates.max_relapse). Measured: the HF ResNet of finished_loss_fraction on
    # 40%-noisy labels (loss 2.3 -> 1.5, the noise's floor) drifts its shortcut BatchNorm
    # gain to 0.37 in 3000 steps.
    max_relapse: float = 0.5


@dataclass(frozen=True)
class LossPlateauThresholds:
    """When the loss stops improving early."""

    # A plateau starts at the first window after which no window improves on the best loss
    # so far by this fraction of it: above window-median noise of batch-64 losses, far below
    # what a learning model gains (our choice).
    min_relative_improvement: float = 0.05
    # "Early": the plateau starts within this fraction of the run, counted in summed learning rate
    # where the trace has one (else in logged steps: the same under a constant rate). Measured:
    # healthy corpus runs plateau (converge) after 0.8 of the run or never; stuck ones by 0.25.
    early_fraction: float = 0.5
    # Logged steps per window (as vanishing_gradient.window).
    window: int = 10
    # The plateau must last this many windows (30 steps) to count (our choice).
    min_windows: int = 3
    # Steps too small to train: over a plateau from the first window (at half the peak learning rate
    # or more), the median update ratio ||dtheta|| / ||theta|| of the weight layers is under this.
    # Healthy training sits near 1e-3 (CS231n: lower means the rate is likely too low). Measured
    # (whole-run medians): healthy real-corpus runs 0.0047-0.16, fine-tunes of pretrained models
    # (AdamW 5e-5, ResNet 1e-4) 2.7e-4-7.5e-4; over the plateau, HF GPT-2 at AdamW 1e-6 6e-5, an HF
    # ResNet at SGD 1e-5 2.5e-6 (a tenth of healthy, our choice).
    tiny_update_ratio: float = 1e-4
    # A trend over the plateau's windows: Mann-Kendall's z-score at or beyond this (3
    # standard deviations of a trendless loss; our choice). Needs 7 windows or more: fewer
    # cannot reach 3. Falling (z <= -3): steadily, only slower than min_relative_improvement:
    # HF GPT-2 at AdamW 1e-5 "plateaus" from step 70 at 5.27 and falls to 5.04 by step 200
    # (z = -4.5), where a rate of 1e-3 reaches 2.5. Rising (z >= 3): the loss gets worse
    # after its best: HF GPT-2 at AdamW 0.1 after a 60-step warm-up, 2.86 at step 80 -> 3.07
    # at step 200, at the unigram level (z = 3.3).
    trend_z: float = 3.0
    # A rise counts only from a loss above this fraction of the start (as
    # vanishing_gradient.finished_loss_fraction): a finished model's loss is its few remaining
    # errors, and weight decay erodes it without harm. Measured: the real corpus's
    # resnet_cifar_recipe goes 0.002 -> 0.01 over its last 40% (z = 5.1), at 1/500 of its start.
    finished_loss_fraction: float = 0.1
    # A collapsed representation: over the plateau, the median share of the variance of the
    # representation the head reads (act_between_inputs) that differs between inputs is under
    # this; the rest is one pattern every input shares, so the prediction barely depends on
    # the input. Measured (medians over each run's second half): healthy real-corpus runs
    # 0.45-1.0, healthy toy runs 0.81-0.97; HF GPT-2 at AdamW 0.1 after a 20-step warm-up,
    # flat at the unigram loss, 0.035 over its plateau (our choice, between the two).
    collapsed_share: float = 0.1


@dataclass(frozen=True)
class SaturatedActivationThresholds:
    """When sigmoid/tanh units sit at their bounds."""

    # SageMaker Debugger SaturatedActivation: threshold_layer = 50 (% of a layer's units).
    warn_fraction: float = 0.5
    # 90%: the layer passes almost no gradient (our choice).
    critical_fraction: float = 0.9
    # Median over the last 10 sampled rows: saturation that persists, not one batch.
    window: int = 10


@dataclass(frozen=True)
class DeadUnitsThresholds:
    """When ReLU-like units never activate."""

    # SageMaker Debugger DeadRelu: threshold_layer = 50 (% of a layer's units).
    warn_fraction: float = 0.5
    # 99%: the layer passes (almost) no gradient at all (our choice).
    critical_fraction: float = 0.99
    # Median over the last 10 sampled rows (as saturated_activation.window).
    window: int = 10


@dataclass(frozen=True)
class PoorInitializationThresholds:
    """When the starting weights scale the signal away from unit variance."""

    # Sampled rows read at the start of training (the first 3 measurements; our choice).
    first_rows: int = 3
    # SageMaker Debugger PoorWeightInitialization: threshold = 10 (largest over smallest
    # activation variance across layers); here on the fitted trend along depth.
    max_variance_ratio: float = 10.0
    # A hidden activation std 10x from 1 (Glorot & Bengio 2010 aim for unit variance).
    std_decades: float = 1.0
    # A layer whose parameter scale is 2x off what its activation needs (PyTorch's
    # calculate_gain convention; He et al. 2015; Glorot & Bengio 2010) is mis-scaled ...
    weight_scale_factor: float = 2.0
    # ... and counts once the mis-scaled layers compound to 10x. Measured: healthy corpus
    # models compound to 1.01-1.02, the models built with mis-scaled layers to 190 or more. The
    # weight scales only name culprits of a measured collapse (or are "info" with no profile
    # recorded): PyTorch's default, 0.41x the He scale, compounds past 10x in any plain or
    # residual net of 3+ layers, most of which train well (issue 12). The measured backward
    # gain compounding through the hidden layers past the same 10x is a collapse.
    compound_decades: float = 1.0
    # Backward gain per hidden layer (RMS of dL/dh) 2x from 1. Measured: healthy corpus
    # models 0.96-1.2; the sigmoid MLP 0.58, the large-init tanh MLP 1.5 (both also fire on
    # the compounded scale).
    gain_factor: float = 2.0
    # Same as vanishing_gradient.min_layers.
    min_layers: int = 3
    # Training recovered (info, when no other warning or critical finding follows): the loss
    # ends at least this fraction below its start (as unstable_updates.min_progress) ...
    min_progress: float = 0.1
    # ... never giving back more than this share of its progress (as
    # unstable_updates.max_relapse). Measured: a DDPM noise predictor (4 SiLU layers of 256,
    # PyTorch's default init, AdamW 1e-3, digits) starts with a backward gain of 0.31 a layer
    # and an output std of 0.05, and its loss falls 0.38 -> 0.115 in 3000 steps with nothing
    # else found; it drew a warning.
    max_relapse: float = 0.5
    # Logged losses per window for those tests (as loss_plateau.window).
    loss_window: int = 10


@dataclass(frozen=True)
class ShortMemoryThresholds:
    """When a recurrent net's gradient forgets distant inputs."""

    # Decades the fitted gradient falls from the last input to the first: 2 = the first input
    # gets 1% of the gradient of the last (our choice; Bengio et al. 1994 and Pascanu et al.
    # 2013 derive the exponential decay, not a cut-off). Measured: the 60-step tanh RNN 12-13;
    # the 8-step LSTM shows no decay.
    warn_decades: float = 2.0
    # 10^-5 of the gradient: those inputs are not learned from at all (our choice).
    critical_decades: float = 5.0
    # The fit must explain the profile: R^2 of log-norm vs distance (our choice).
    min_r2: float = 0.7
    # The horizon reported is the distance at which the gradient has fallen 100x.
    horizon_factor: float = 100.0
    # Median profile over the last 10 sampled rows (as saturated_activation.window).
    window: int = 10
    # Shorter sequences cannot show a trend (our choice).
    min_length: int = 4
    # With a loss at every position (a language model) the whole-loss profile is flat; the
    # recorder's last-position profile (d loss_T / dx_t) is read instead, when its window
    # reaches at least this many steps back (shorter windows are not judged: a 35-step window
    # cannot show whether the decay flattens past the near context; PyTorch's healthy LSTM LM
    # recipe, bptt 35, loses 7.3 decades over its window in a straight line). Rates are
    # reported per `lookback` steps (the 50-step window).
    lookback: int = 50
    # The near context, left out of the fit: a next-token loss draws most of its gradient from
    # the last few inputs even in gated cells (byte LMs below: LSTM and GRU lose 10-12 decades
    # per 50 steps over the first 10 steps back, 4.5-6 over 10-50), and a trained gated cell's
    # decay flattens only beyond it; a tanh RNN's does not (our choice, measured).
    near_steps: int = 20
    # Decades per `lookback` steps of the last position's gradient, fitted from `near_steps`
    # back to the start of the window (underflowed zeros left out). Measured, median profile
    # of the last 10 probed rows: byte LMs (64 units, 200-byte windows of stdlib sources, Adam
    # 3e-3) LSTM 4.1 after 20 steps, 2.3-2.6 after 100-300; GRU 4.8 after 60 steps, 4.0 after
    # 100, 3.0 after 300; the tanh RNN 16-20. The word_language_model tanh RNN (bptt 200, SGD
    # lr 5, clip 0.25, 150 steps: the real corpus's broken case, 7.35 decades at 50 steps back
    # by autograd) 7.2, 7.7 and 10.8 with seeds 0, 1, 2. 5.5 sits near the geometric middle of
    # the gated cells' 4.1 and the tanh RNN's 7.2 (margins 1.3x each side, 1.15x to the GRU
    # after 60 steps; our choice, measured). Gated cells at default initialisation
    # (forget/update gates ~0.5) decay straight at ~9.5 until they train (the GRU 8.0 after
    # 20 steps): a run judged that early can draw the warning.
    far_warn_decades: float = 5.5
    # 12 decades per 50 steps beyond the near context: float32's 7.2-decade resolution is
    # spent within 30 steps (our choice; the tanh RNN byte LMs above, 16-20, cross it).
    far_critical_decades: float = 12.0
    # A loss that ended this fraction below its start learned all it trained on: info (our
    # choice). Measured: a 2-layer LSTM fitting 32 random targets, 1.18 -> 7e-15 (critical).
    solved_progress: float = 0.99
    # So is a whole-loss decay gentler than the far warning's rate on a loss that improved (as
    # unstable_updates.min_progress; our choice). Measured: an LSTM telling two stdlib files
    # apart, labels 10% flipped: 0.69 -> 0.31, 99.8% held out, 0.043 decades a step (a warning
    # before); the 60-step tanh RNN asked for its first input: 0.22 a step.
    min_progress: float = 0.1
    # ... never giving back more than this share of it (as unstable_updates.max_relapse).
    max_relapse: float = 0.5
    # Logged losses per window for those tests (as loss_plateau.window).
    loss_window: int = 10


@dataclass(frozen=True)
class UnstableUpdatesThresholds:
    """When update ratios ||dtheta|| / ||theta|| are far from the ~1e-3 of healthy training."""

    # CS231n (Karpathy, "Neural Networks Part 3") puts a healthy ratio near 1e-3; 100x that is
    # a learning rate far too high for the layer. Measured: healthy corpus models <= 0.026,
    # SGD at lr 10 0.45.
    warn_ratio: float = 0.1
    # SageMaker Debugger WeightUpdateRatio: large_threshold = 10.
    critical_ratio: float = 10.0
    # SageMaker Debugger WeightUpdateRatio: small_threshold = 1e-8 (the weights do not move).
    small_ratio: float = 1e-8
    # Sampled rows per block (our choice: 3 samples = 30 steps at sample_every=10; a median of
    # 3 needs 2 high, so one odd step is not enough, yet a quick blow-up is still caught).
    window: int = 3
    # A ratio above warn_ratio (not above critical_ratio) is productive, not a finding, when
    # the loss thrives on it (issue 12: PyTorch's LSTM LM recipe, SGD lr 20 and clip 0.25,
    # shows 0.22 and reaches the best loss of an lr sweep; a tanh RNN diverging under the same
    # recipe shows 0.28: the ratio cannot tell them apart, the loss can). Thriving: by the end
    # of the high-ratio span the loss's window median is at least this fraction below its
    # start (our choice: 10%, twice the loss_plateau noise allowance) ...
    min_progress: float = 0.1
    # ... no loss window gives back more than this share of the progress made before it
    # (overshooting: the loss rises or oscillates after large steps; the corpus SGD-lr-10 net
    # gives back many times its progress, healthy ones under 0.25; our choice: half). Where
    # the user clips (a `clip_coef` scalar below 1, or meta "clipping"), each step is bounded
    # and only the progress is asked for ...
    max_relapse: float = 0.5
    # ... and no logged loss among the first early_rows reaches this multiple of the start (a
    # blow-up between sampled steps: GPT-2 at lr 0.05 went 10.8 -> 24 by step 4, with an
    # update ratio of 7 at step 0). Same as exploding_gradient.loss_spike_factor. With such an
    # early spike, one sampled row above warn_ratio in those steps is enough to fire.
    loss_spike_factor: float = 1.5
    # Logged losses read value by value at the start (our choice: 20, the dense start).
    early_rows: int = 20
    # One sampled step in the first early_rows that moves a layer by more than its own norm
    # erases what the initialisation built, whatever the loss does next. Measured on the
    # real corpus: GPT-2 under AdamW lr 0.1 (no warm-up) moves its weights 5-10x their norm
    # at step 0 and ends at the unigram loss; the healthy cases stay at or below 0.64 (the
    # LSTM LM recipe's decoder at SGD lr 20). 1 = the step is as large as the weights.
    erase_ratio: float = 1.0
    # Logged losses per window for progress and relapse (as loss_plateau.window).
    loss_window: int = 10
    # A layer whose first recorded weights have an RMS below this starts from (near) zero by
    # design: LayerScale (ConvNeXt, CaiT: 1e-6), ReZero's gain (0), a zero-initialised
    # residual BatchNorm. Its step over its own tiny norm is growth, not overshoot (a healthy
    # ConvNeXt under AdamW 1e-3: 1000x at step 0, then ~1/k after k steps), so its ratio is
    # taken over the scale it grows into: the larger of its norm then and its median norm
    # over the last third of the sampled rows. No usual init comes near: He's RMS sqrt(2 /
    # fan_in) is 1e-3 at a fan-in of 2e6, and gains start at 1 (our choice: 10x below that).
    zero_init_rms: float = 1e-4
    # Such a layer's norm is the sum of its steps: after k steps in no steady direction
    # (noisy gradients) it is ~sqrt(k) steps, so every step is ~1/sqrt(k) of it whatever the
    # rate, and a ratio up to this factor over sqrt(k) is read as growth, not overshoot.
    # Measured: LoRA's zero-initialised B under AdamW (peft r=8, a pretrained 2-layer Llama,
    # 60-200 steps, rates 1e-3 to 1.0) stays at ratio * sqrt(k) <= 1.15 (median 0.2-0.6), its
    # ratio at step 60 ~0.13, which read as a warning before; a linear warm-up's growing steps
    # give sqrt(3) = 1.73 (our choice: 2, above both). Steps that overshoot and undo each
    # other keep the norm from growing, their ratio near 1 or above, past the bound in 4 steps.
    zero_walk_factor: float = 2.0
    # Weights that no longer move (under small_ratio) under a learning rate at or below this
    # share of the run's peak were stopped by the schedule, not by a lost gradient: HF GPT-2
    # under AdamW 1e-3 with StepLR(30, 0.1) stepped every batch (written for epochs) ran at
    # 1e-9 by step 180, its LayerNorm gains moving ~1e-9 of their norm a step; counted on the
    # median over the stalled block (our choice: a thousandth).
    decayed_rate_share: float = 1e-3
    # ... and only where the run's last stretch under that share holds at least this share of
    # its steps: a decay to zero that ends the run spends ~0.1% (linear), ~2% (cosine,
    # OneCycle's annealing) or ~3% (quadratic) of its steps there by design; that StepLR, 40%
    # of 200. Elsewhere a ratio counts only where it would be under small_ratio at the peak
    # rate too (steps follow the rate). Our choice: a tenth, 3x the quadratic decay's.
    stopped_rate_stretch: float = 0.1
    # High ratios confined to the first early_rows steps, that failed only the progress test,
    # are productive when the loss falls steadily after them: its window medians' Mann-Kendall
    # z-score at or below minus this (as loss_plateau.trend_z). HF GPT-2 with frozen tied
    # embeddings under AdamW 1e-3: 0.17x at steps 0-2, -2% by step 19, z -5.7 after.
    falling_z: float = 3.0
    # Weights that no longer move where the model has finished (every loss window over the
    # last block at most this fraction of the starting loss, as vanishing_gradient's) stopped
    # because there is no error left to learn from, not because a gradient was lost: HF
    # ResNet-50 memorising 4 images (SGD 1e-3, momentum 0.9) reaches a loss of 0.001 from
    # 7.6 by step 40, and its blocks' last BatchNorm gains then move under 1e-8 a step.
    finished_loss_fraction: float = 0.1


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
_AT_LEAST_ONE = (
    "window",
    "windows",
    "trailing",
    "first_rows",
    "min_windows",
    "rising_windows",
    "early_rows",
    "loss_window",
)


def _validate_group(rule: str, group: Any) -> None:
    """Reject values no rule can use (negative windows, NaN thresholds)."""
    for f in fields(group):
        value = getattr(group, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"threshold {rule}.{f.name} must be finite, got {value!r}")
        if value < 0:
            raise ValueError(f"threshold {rule}.{f.name} must be >= 0, got {value!r}")
        if f.name in _AT_LEAST_ONE and value < 1:
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
