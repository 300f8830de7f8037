"""The corpus: each case's recipe, expected diagnosis and check; training under ``gw.watch``."""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import gradwatch as gw

from .checks import (
    Check,
    Run,
    at_chance,
    barely_learned,
    both,
    climbs_back,
    dead_relu_probe,
    goes_below_zero,
    goes_nonfinite,
    learns,
    loss_spikes,
    memory_probe,
    never_below_probability_floor,
    no_context_learned,
    norm_gains_unchanged,
    norm_stats_unchanged,
    stops_learning,
)
from .families import (
    bart,
    deberta,
    gemma2_nll_of_logits,
    mamba,
    modernbert,
    qwen2_large_init,
    swin,
    t5,
    wav2vec2,
)
from .models import (
    Setup,
    albert,
    bert,
    convnext,
    ddpm_mlp,
    dead_relu,
    efficientnet,
    fp16,
    gpt2,
    gpt2_epoch_schedule_per_batch,
    gpt2_never_zeroed,
    gpt2_nll_of_logits,
    levit,
    llama,
    llama_bf16,
    lstm_lm,
    mobilenet_v2,
    relu_mlp,
    residual_mlp,
    resnet,
    resnet50_small_images,
    resnet_eval_mode,
    resnet_no_norm,
    resnet_softmax_before_loss,
    resnet_weight_decay,
    rnn_lm,
    roberta,
    segformer,
    sigmoid_cnn,
    transformer_lm,
    vit,
)
from .recipes import STEPS, gpt2_hf_recipe, roberta_hf_recipe


# ---------------------------------------------------------------------- the corpus
@dataclass
class Case:
    """One real-architecture model: its recipe, what the diagnosis must say, how it is checked."""

    name: str
    description: str
    build: Callable[[int], Setup]  # seed -> set-up
    check: Check  # healthy: it learns; broken: it is broken (independently of gradwatch)
    steps: int = 200
    expect: tuple[str, ...] = ()  # rules that must fire (warning or critical)
    # Words the diagnosis must say of the loop, in a note or in every alarm (a mistake with
    # no rule id: Diagnosis.notes), where its rules need not fire.
    expect_note: str | None = None
    healthy: bool = False  # no warning/critical finding allowed
    slow: bool = False  # over ~10 s on one thread: not in CI
    warmup: int = 0  # steps of lr_warmup the recipe itself uses (0: none)


CASES: tuple[Case, ...] = (
    # -- healthy: each really learns (the check) and must draw no warning.
    Case(
        "gpt2_lm",
        "HF GPT-2, 2 layers, width 64, byte LM on stdlib source (64-byte windows), AdamW 1e-3",
        lambda seed: gpt2(1e-3, seed),
        learns(),
        healthy=True,
    ),
    Case(
        "llama_lm",
        "HF Llama, 2 layers, width 64 (RMSNorm, SwiGLU, rotary, GQA), byte LM, AdamW 1e-3",
        llama,
        learns(),
        healthy=True,
    ),
    Case(
        "bert_classifier",
        "HF BERT, 2 layers, width 64: which stdlib file a 48-byte window is from; converges",
        bert,
        learns(0.3),
        healthy=True,
    ),
    Case(
        "gpt2_12_layers",
        "HF GPT-2 as gpt2_lm with GPT-2 small's 12 layers (width 64): depth, AdamW 1e-3",
        lambda seed: gpt2(1e-3, seed, layers=12),
        learns(),
        healthy=True,
        slow=True,
    ),
    Case(
        "llama_8_layers",
        "HF Llama as llama_lm with 8 layers: depth, AdamW 1e-3",
        lambda seed: llama(seed, layers=8),
        learns(),
        healthy=True,
        slow=True,
    ),
    Case(
        "roberta_classifier",
        "HF RoBERTa, 4 layers, width 64, BERT's which-file task, AdamW 1e-3: converges through "
        "one burst of gradient spikes (17x, 19x, 13x in consecutive steps)",
        roberta,
        learns(0.3),
        healthy=True,
    ),
    Case(
        "roberta_hf_recipe",
        "HF RoBERTa as roberta_classifier with a typical HF script's recipe: dropout 0.1, AdamW "
        "5e-4 with weight decay, 10% warm-up then cosine decay, clipping at 1.0, 300 steps; "
        "near the end its gradient norm swings 100x between batches with and without a mistake",
        roberta_hf_recipe,
        learns(0.3),
        steps=STEPS,
        healthy=True,
        slow=True,
    ),
    Case(
        "gpt2_hf_recipe",
        "HF GPT-2, 4 layers, width 64, byte LM with the same recipe (dropout 0.1, AdamW 5e-4 "
        "with weight decay, warm-up then cosine decay, clipping at 1.0), 300 steps",
        gpt2_hf_recipe,
        learns(),
        steps=STEPS,
        healthy=True,
        slow=True,
    ),
    Case(
        "albert_classifier",
        "HF ALBERT, one layer shared by 6 (width 64), BERT's which-file task, AdamW 1e-3: "
        "gradient spikes of up to 82x that the loss absorbs (seed 1)",
        albert,
        learns(0.3),
        healthy=True,
        slow=True,
    ),
    Case(
        "vit_digits",
        "HF ViT, 2 layers, width 64, 4x4 patches of 16x16 digits, AdamW 1e-3",
        vit,
        learns(),
        healthy=True,
    ),
    Case(
        "resnet_digits",
        "HF ResNet (basic blocks, BatchNorm), 2 stages, 32x32 digits, SGD 0.05 + momentum",
        resnet,
        learns(),
        healthy=True,
    ),
    Case(
        "resnet_cifar_recipe",
        "HF ResNet as resnet_digits under the CIFAR recipe: SGD 0.1 + momentum 0.9, weight "
        "decay 5e-4, 3000 steps (finished by step ~150; decay then shrinks norms to ~0.3)",
        resnet_weight_decay,
        learns(0.1),
        steps=3000,
        healthy=True,
        slow=True,
    ),
    Case(
        "resnet_noisy_labels",
        "resnet_cifar_recipe on digits whose labels are redrawn at random 40% of the time "
        "(a loss floor of ~1.44), 3000 steps: weight decay drifts norms down at the floor",
        lambda seed: resnet_weight_decay(seed, label_noise=0.4),
        learns(0.75),
        steps=3000,
        healthy=True,
        slow=True,
    ),
    Case(
        "convnext_digits",
        "HF ConvNeXt, 2 stages (16, 32), LayerScale init 1e-6, 16x16 digits, AdamW 1e-3",
        convnext,
        learns(),
        healthy=True,
    ),
    Case(
        "segformer_digits",
        "HF SegFormer, 4 stages (16-128), 32x32 digits, AdamW 1e-3: every stage's attention "
        "sees one key, so queries and keys get no gradient (1e-13) while it learns",
        segformer,
        learns(),
        healthy=True,
    ),
    Case(
        "levit_digits",
        "HF LeViT, 3 stages (32, 48, 64), 32x32 digits, AdamW 1e-3: its later attention sees "
        "one key (attention biases and queries get exactly 0)",
        levit,
        learns(),
        healthy=True,
    ),
    Case(
        "mobilenet_v2_digits",
        "HF MobileNetV2 (width 0.35, BatchNorm, ReLU6), 32x32 digits down to 1x1, AdamW 1e-3",
        mobilenet_v2,
        learns(),
        steps=100,
        healthy=True,
    ),
    Case(
        "t5_seq2seq",
        "HF T5 (2 + 2 layers, width 64: relative positions, RMS norm, no biases) continuing "
        "32-byte stdlib windows from the 32 before, AdamW 1e-3",
        t5,
        learns(),
        healthy=True,
    ),
    Case(
        "bart_seq2seq",
        "HF BART (2 + 2 layers, width 64: post-LN, learned positions, tied embeddings) on "
        "T5's task, AdamW 1e-3",
        bart,
        learns(),
        healthy=True,
    ),
    Case(
        "wav2vec2_digits",
        "HF wav2vec2 classifier (strided conv encoder with group norm, conv positions, 2 "
        "layers of width 64) on digits read as 1024-sample signals, AdamW 1e-3",
        wav2vec2,
        learns(),
        healthy=True,
    ),
    Case(
        "mamba_lm",
        "HF Mamba byte LM (2 layers, width 64, state 8: selective scan, causal conv, "
        "RMSNorm; reference PyTorch path), AdamW 1e-3",
        mamba,
        learns(),
        healthy=True,
        slow=True,
    ),
    Case(
        "swin_digits",
        "HF Swin (2 stages of 2 blocks, width 32, shifted 4x4 windows, patch merging) on "
        "32x32 digits, AdamW 1e-3",
        swin,
        learns(),
        healthy=True,
        slow=True,
    ),
    Case(
        "deberta_classifier",
        "HF DeBERTa-v2, 2 layers, width 64 (disentangled relative attention), BERT's which-file "
        "task, AdamW 1e-3",
        deberta,
        learns(0.3),
        healthy=True,
    ),
    Case(
        "modernbert_classifier",
        "HF ModernBERT, 2 layers, width 64 (rotary, GeGLU, no biases; its head dense -> GELU "
        "-> LayerNorm starts at output std 0.037), BERT's which-file task, AdamW 1e-3 after "
        "a 20-step warm-up",
        modernbert,
        learns(0.3),
        healthy=True,
        warmup=20,
    ),
    Case(
        "lstm_lm",
        "word_language_model recipe: 2-layer LSTM 64, bptt 35, SGD lr 20, clip_grad_norm_ 0.25",
        lstm_lm,
        learns(),
        healthy=True,
    ),
    Case(
        "residual_mlp_default_init",
        "12 pre-LN residual MLP blocks, PyTorch default init, digits, Adam 1e-3",
        residual_mlp,
        learns(),
        healthy=True,
    ),
    Case(
        "ddpm_mlp_default_init",
        "DDPM noise predictor on digits: 4 SiLU layers of 256, PyTorch's default init (a "
        "backward gain of ~0.3 a layer at the start), AdamW 1e-3, 1000 steps",
        ddpm_mlp,
        learns(0.3),
        steps=1000,
        healthy=True,
    ),
    Case(
        "relu_mlp_default_init",
        "3-layer ReLU MLP (128 wide), PyTorch default init, digits, SGD 0.05 + momentum",
        relu_mlp,
        learns(),
        healthy=True,
    ),
    Case(
        "preln_transformer_same_lr",
        "the post-LN case's twin with pre-LN (norm_first=True): same Adam 1e-2, no warm-up",
        lambda seed: transformer_lm(seed, 1e-2, norm_first=True, layers=4, length=32),
        learns(),
        steps=150,
        healthy=True,
        slow=True,
    ),
    # -- broken by a realistic cause: the check confirms it without gradwatch.
    Case(
        "deep_sigmoid_cnn",
        "12 conv3x3 + sigmoid layers (16 channels), default init, 8x8 digits, SGD 0.1 + mom.",
        sigmoid_cnn,
        at_chance(10),
        steps=120,
        expect=("vanishing_gradient",),
    ),
    Case(
        "resnet_no_norm_large_init",
        "HF ResNet, 3 stages, BatchNorm -> Identity, convs 2x He init, SGD 0.01 + momentum",
        lambda seed: resnet_no_norm(seed, 2.0),
        goes_nonfinite(),
        steps=60,
        expect=("exploding_gradient",),
    ),
    Case(
        "gpt2_lr_too_high",
        "HF GPT-2 as gpt2_lm but AdamW lr 0.1 (no warm-up): loss spikes, stays at unigram",
        lambda seed: gpt2(0.1, seed),
        no_context_learned(),
        expect=("unstable_updates",),
        slow=True,
    ),
    Case(
        "gpt2_warmup_too_short",
        "HF GPT-2 as gpt2_lm but AdamW lr 0.1 after a 20-step warm-up: stays at unigram, "
        "its representation collapsed",
        lambda seed: gpt2(0.1, seed),
        no_context_learned(),
        expect=("loss_plateau",),
        warmup=20,
    ),
    Case(
        "gpt2_lr_too_low",
        "HF GPT-2 as gpt2_lm but AdamW lr 1e-6: steps a thousandth of healthy, loss barely moves",
        lambda seed: gpt2(1e-6, seed),
        no_context_learned(),
        expect=("loss_plateau",),
    ),
    Case(
        "deberta_lr_too_low",
        "HF DeBERTa-v2 as deberta_classifier but AdamW lr 1e-7: every layer's steps tiny, and "
        "the vanishing gradient it starts with (720x through 14 layers) never outgrown",
        lambda seed: deberta(seed, lr=1e-7),
        at_chance(2),
        expect=("loss_plateau", "vanishing_gradient"),
    ),
    Case(
        "qwen2_large_init",
        "HF Qwen2, 2 layers, width 64, built with initializer_range 1.0 (50x its default): "
        "logits start at std 8, the loss at 4x log(256); AdamW 1e-3",
        qwen2_large_init,
        no_context_learned(),
        expect=("poor_initialization",),
    ),
    Case(
        "resnet50_small_images",
        "HF ResNet-50 (ImageNet config) on 32x32 digits, batch 16, SGD 0.1x16/256 + mom., no warm-up",
        resnet50_small_images,
        # The early blow-up, seen as 2x the first loss within 20 steps: 3.4x (10.2) on an AMD
        # EPYC, 2.3x (6.9, then 15 at step 29 and 28.7 at step 80) on an Intel Xeon, the same
        # seed; with a 30-step warm-up 1.4x (benchmarks/warmup_effect.py).
        both(loss_spikes(2.0, 20), at_chance(10)),
        steps=300,
        expect=("unstable_updates",),
        slow=True,
    ),
    Case(
        "resnet_lr_too_high",
        "HF ResNet as resnet_digits at SGD 5 + momentum: first steps larger than the weights, "
        "then dead units and a vanishing gradient",
        lambda seed: resnet(seed, lr=5.0),
        barely_learned(10),
        expect=("unstable_updates", "dead_units"),
    ),
    Case(
        "gpt2_epoch_schedule_per_batch",
        "HF GPT-2 as gpt2_lm under StepLR(30, 0.1), a schedule in epochs stepped every batch: "
        "the rate is 1e-9 by step 180",
        gpt2_epoch_schedule_per_batch,
        stops_learning(120),
        expect=("unstable_updates",),
    ),
    Case(
        "gpt2_never_zeroed",
        "HF GPT-2 as gpt2_lm in a loop that never calls zero_grad: each step's gradient is "
        "the sum of every step's so far, the loss climbs back from its best",
        gpt2_never_zeroed,
        climbs_back(),
        expect=("exploding_gradient",),
    ),
    Case(
        "resnet_eval_mode",
        "HF ResNet as resnet_digits trained in eval mode (model.train() forgotten): BatchNorm "
        "normalises with its initial statistics, units die",
        resnet_eval_mode,
        norm_stats_unchanged(),
        expect=("dead_units",),
    ),
    Case(
        "resnet_softmax_before_loss",
        "HF ResNet as resnet_digits, its logits through a softmax before cross_entropy "
        "(which applies log-softmax itself): the loss cannot go below log(e + 9) - 1",
        resnet_softmax_before_loss,
        never_below_probability_floor(10),
        expect_note="applies log-softmax itself",
    ),
    Case(
        "gpt2_nll_of_logits",
        "HF GPT-2 as gpt2_lm, its loss nll_loss of the raw logits with no log-softmax (which "
        "nll_loss expects): the loss is minus the target's logit and falls below 0 unbounded",
        gpt2_nll_of_logits,
        goes_below_zero(),
        expect_note="NLLLoss expects log-probabilities",
    ),
    Case(
        "gemma2_nll_of_logits",
        "HF Gemma 2 (2 layers, width 64), its loss nll_loss of its soft-capped logits (30 x "
        "tanh(logits / 30)): the graph sees a multiplication, not a layer's output",
        gemma2_nll_of_logits,
        goes_below_zero(),
        expect_note="to something other than log-probabilities",
    ),
    Case(
        "llama_bf16_weights",
        "HF Llama as llama_lm with bfloat16 weights (no float32 copy), AdamW 1e-4: its RMSNorm "
        "gains (1.0) never move, a step of 1e-4 rounds away",
        llama_bf16,
        norm_gains_unchanged(),
        steps=120,
        expect=("unstable_updates",),
    ),
    Case(
        "efficientnet_hf_init",
        "HF EfficientNet (B0 blocks, width 0.25, depth 0.3) from its config: its init draws "
        "BatchNorm gains from N(0, 0.02), the signal dies by the head; AdamW 1e-3",
        efficientnet,
        at_chance(10),
        steps=60,
        expect=("poor_initialization", "vanishing_gradient"),
    ),
    Case(
        "layernorm_shift_dead_relu",
        "Linear -> LayerNorm(bias -3) -> ReLU x3 on digits: the shift keeps units below 0",
        lambda seed: dead_relu(seed, -3.0),
        both(dead_relu_probe(), at_chance(10)),
        expect=("dead_units",),
    ),
    Case(
        "tanh_rnn_lm_long_window",
        "word_language_model RNN_TANH 64, bptt 200, SGD lr 5, clip 0.25 (learns local bytes)",
        lambda seed: rnn_lm(seed, 200),
        memory_probe(),
        steps=150,
        expect=("short_memory",),
    ),
    Case(
        "postln_transformer_no_warmup",
        "4-layer post-LN nn.TransformerEncoder byte LM, width 64, Adam 1e-2, no warm-up",
        lambda seed: transformer_lm(seed, 1e-2, norm_first=False, layers=4, length=32),
        no_context_learned(),
        steps=150,
        expect=("vanishing_gradient",),
        slow=True,
    ),
    Case(
        "fp16_static_loss_scale",
        "ReLU MLP in float16, static loss scale 2**18 (no overflow check), SGD 0.05 + mom.",
        lambda seed: fp16(seed, 2.0**18),
        goes_nonfinite(),
        expect=("nonfinite_gradient",),
    ),
)
REAL_CORPUS: dict[str, Case] = {c.name: c for c in CASES}


def record(
    case: Case,
    seed: int = 0,
    *,
    warmup: int | None = None,
    lr_factor: float | None = None,
    remedy: str | None = None,
    steps: int | None = None,
    watch: dict[str, Any] | None = None,
) -> Run:
    """Train one case under ``gw.watch`` (in memory); keep the loop's own losses and checks.

    ``warmup`` > 0 adds the ``lr_warmup`` remedy over that many steps (the scheduler steps
    after the optimizer); None takes the case's own (``Case.warmup``). ``lr_factor`` adds
    the ``lower_lr`` remedy with that factor (``raise_lr`` for a factor above 1). ``remedy`` applies that model remedy (an id
    of :data:`gradwatch.remedies.REMEDIES` whose only need is the model) before training,
    with a fresh optimizer of the case's kind and settings. ``steps`` replaces the case's
    own count. ``watch``: the recording options (default: the fixed spacing,
    ``overhead=None``, so that a case's trace does not depend on the machine's speed). Runs
    on one CPU thread (restored afterwards), so results and timings match across hosts.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if steps is not None:
            case = dataclasses.replace(case, steps=steps)
        options = {"overhead": None} if watch is None else watch
        warm = case.warmup if warmup is None else warmup
        return _record(case, seed, warm, lr_factor, remedy, watch=options)
    finally:
        torch.set_num_threads(threads)


def _record(
    case: Case,
    seed: int,
    warmup: int,
    lr_factor: float | None,
    remedy: str | None,
    *,
    watch: dict[str, Any],
) -> Run:
    torch.manual_seed(seed)
    setup = case.build(seed)
    if remedy is not None:
        model = gw.remedies.apply(setup.model, remedy)
        assert isinstance(model, torch.nn.Module), f"{remedy} is not a model remedy"
        opt = setup.optimizer
        # The optimizer's own settings, less the defaults its constructor does not take.
        takes = inspect.signature(type(opt)).parameters
        settings = {k: v for k, v in opt.defaults.items() if k in takes}
        setup = dataclasses.replace(
            setup, model=model, optimizer=type(opt)(model.parameters(), **settings)
        )
    params = [p for p in setup.model.parameters() if p.requires_grad]
    schedulers = []
    if lr_factor is not None:
        schedulers.append(
            gw.remedies.apply(
                setup.model,
                "raise_lr" if lr_factor > 1 else "lower_lr",
                optimizer=setup.optimizer,
                factor=lr_factor,
            )
        )
    if warmup:
        schedulers.append(gw.remedies.lr_warmup(setup.optimizer, warmup))
    if setup.scheduler is not None:
        schedulers.append(setup.scheduler(setup.optimizer))
    losses: list[float] = []
    finite: list[bool] = []
    if setup.eval_mode:
        setup.model.eval()
    t0 = time.perf_counter()
    with gw.watch(setup.model, setup.optimizer, **watch) as w:
        for step in range(case.steps):
            loss = setup.loss(setup.model, setup.batches(step))
            if setup.zero_grad:
                setup.optimizer.zero_grad()
            (loss * setup.loss_scale).backward()
            grads = [p.grad for p in params if p.grad is not None]
            if setup.loss_scale != 1.0:
                torch._foreach_div_(grads, setup.loss_scale)  # unscale by hand, no check
            finite.append(bool(torch.stack([g.isfinite().all() for g in grads]).all()))
            if setup.clip is not None:
                torch.nn.utils.clip_grad_norm_(params, setup.clip)
            setup.optimizer.step()
            for scheduler in schedulers:
                scheduler.step()  # type: ignore[union-attr]
            w.log(loss=loss)
            losses.append(float(loss.detach()))
    trace = w.trace
    findings = gw.diagnose(trace)
    return Run(setup, losses, finite, trace, findings, time.perf_counter() - t0)
