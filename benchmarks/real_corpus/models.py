"""The models and their training set-ups: Hugging Face from configs, PyTorch recipes."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data import (
    Batch,
    bptt_batches,
    byte_windows,
    digit_images,
    digit_vectors,
    noisy_labels,
    which_file_windows,
)

LossFn = Callable[[nn.Module, Batch], torch.Tensor]


# ---------------------------------------------------------------------- losses
def ce_logits(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Cross-entropy of a model returning logits (a tensor or an HF output with ``.logits``)."""
    x, y = batch
    out = model(x)
    logits = out if isinstance(out, torch.Tensor) else out.logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def ce_pixels(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Cross-entropy of an HF image classifier called with ``pixel_values``."""
    x, y = batch
    return F.cross_entropy(model(pixel_values=x).logits, y)


def ce_of_probabilities(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Cross-entropy of an HF image classifier's logits passed through a softmax first: the
    classic mistake (``cross_entropy`` applies log-softmax itself)."""
    x, y = batch
    return F.cross_entropy(model(pixel_values=x).logits.softmax(-1), y)


def nll_of_logits(model: nn.Module, batch: Batch) -> torch.Tensor:
    """``nll_loss`` of a model's raw logits, with no log-softmax: the classic mistake
    (``nll_loss`` takes log-probabilities and only negates the target's entry)."""
    x, y = batch
    logits = model(x).logits
    return F.nll_loss(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


# ---------------------------------------------------------------------- models
class RNNModel(nn.Module):
    """pytorch/examples word_language_model: Embedding -> LSTM/tanh-RNN -> Linear decoder.

    Same layout and init as the example (encoder/decoder uniform(-0.1, 0.1), decoder bias 0,
    recurrent layer at PyTorch's default); dropout off so runs are deterministic.
    """

    def __init__(self, kind: str, ntoken: int, ninp: int, nhid: int, nlayers: int) -> None:
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn: nn.Module
        if kind == "LSTM":
            self.rnn = nn.LSTM(ninp, nhid, nlayers)
        else:
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity="tanh")
        self.decoder = nn.Linear(nhid, ntoken)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, x: torch.Tensor, hidden: Any = None) -> tuple[torch.Tensor, Any]:
        emb = self.encoder(x)  # (T, B, ninp)
        out, hidden = self.rnn(emb, hidden)  # (T, B, nhid)
        return self.decoder(out), hidden  # (T, B, ntoken)


def _detach(hidden: Any) -> Any:
    """word_language_model's ``repackage_hidden``: cut the graph between batches."""
    if isinstance(hidden, torch.Tensor):
        return hidden.detach()
    return tuple(_detach(h) for h in hidden)


def _carried_hidden_loss() -> LossFn:
    """Next-token loss of an :class:`RNNModel`, carrying the hidden state across batches."""
    state: dict[str, Any] = {"hidden": None}

    def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        out, hidden = model(x, state["hidden"])
        state["hidden"] = _detach(hidden)
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    return loss


class PreLNBlock(nn.Module):
    """x + Linear(ReLU(Linear(LayerNorm(x)))): a pre-LN residual MLP block, default init."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class CausalTransformerLM(nn.Module):
    """Byte LM from ``nn.TransformerEncoderLayer`` with a causal mask (post- or pre-LN)."""

    def __init__(self, layers: int, width: int, heads: int, length: int, norm_first: bool) -> None:
        super().__init__()
        self.tok = nn.Embedding(256, width)
        self.pos = nn.Embedding(length, width)
        layer = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=norm_first
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, 256)
        self.mask: torch.Tensor
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(length))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        h = self.tok(x) + self.pos(torch.arange(t))  # (B, T, C)
        h = self.blocks(h, mask=self.mask[:t, :t], is_causal=True)
        return self.head(h)  # (B, T, 256)


class NoisePredictor(nn.Module):
    """A DDPM noise predictor for 64-pixel digits: sinusoidal time features through
    Linear + SiLU, concatenated with the noisy input, then 4 Linear + SiLU layers of 256
    (PyTorch's default init throughout)."""

    def __init__(self, width: int = 256, depth: int = 4) -> None:
        super().__init__()
        self.time = nn.Linear(16, 128)
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(64 + 128 if i == 0 else width, width), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(width, 64))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        freqs = torch.exp(torch.arange(8, dtype=x.dtype) * -math.log(1000.0) / 8)
        angles = t[:, None] * freqs
        time = F.silu(self.time(torch.cat([angles.sin(), angles.cos()], 1)))
        return self.net(torch.cat([x, time], 1))


def _denoising_loss(seed: int, steps: int = 1000) -> LossFn:
    """DDPM's simple loss (Ho et al. 2020): the noise added at a random step of a linear
    beta schedule (1e-4 to 0.02 over ``steps``), predicted under MSE; seeded draws."""
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, steps), 0)
    gen = torch.Generator().manual_seed(seed + 2)

    def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
        x, _ = batch
        t = torch.randint(0, steps, (x.shape[0],), generator=gen)
        noise = torch.randn(x.shape, generator=gen)
        a = abar[t][:, None]
        return F.mse_loss(model(a.sqrt() * x + (1 - a).sqrt() * noise, t.float()), noise)

    return loss


# ---------------------------------------------------------------------- set-ups
@dataclass
class Setup:
    """What one case trains: model, optimizer, batches, loss, and the user's own clipping."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    batches: Callable[[int], Batch]
    loss: LossFn = ce_logits
    clip: float | None = None  # torch.nn.utils.clip_grad_norm_ max_norm, done by the user
    loss_scale: float = 1.0  # static loss scale (unscaled by hand before the step)
    # The user's own learning-rate schedule, stepped after every optimizer step.
    scheduler: Callable[[torch.optim.Optimizer], Any] | None = None
    zero_grad: bool = True  # False: the loop never zeroes its gradients (a bug)
    eval_mode: bool = False  # True: the model trains in eval mode (model.train() forgotten)


def hf_classifier(
    model_cls: Callable[[Any], nn.Module],
    cfg: Any,
    labels: int,
    batches: Callable[[int], Batch],
    loss: LossFn = ce_logits,
    *,
    lr: float = 1e-3,
) -> Setup:
    """An HF classifier from ``cfg`` with ``labels`` classes, under AdamW at ``lr``.

    ``num_labels`` is set on the config, not passed to it: it is a property of
    ``PretrainedConfig`` that sizes ``id2label``."""
    cfg.num_labels = labels
    model = model_cls(cfg)
    return Setup(model, torch.optim.AdamW(model.parameters(), lr=lr), batches, loss=loss)


def gpt2(lr: float, seed: int, layers: int = 2) -> Setup:
    """HF GPT-2 byte LM (2 layers, width 64) on 64-byte stdlib windows, AdamW at ``lr``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=256, n_positions=64, n_embd=64, n_layer=layers, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    model = GPT2LMHeadModel(cfg)
    return Setup(model, torch.optim.AdamW(model.parameters(), lr=lr), byte_windows(64, seed))


def gpt2_nll_of_logits(seed: int) -> Setup:
    """HF GPT-2 as :func:`gpt2` at 1e-3, its loss ``nll_loss`` of the raw logits."""
    return dataclasses.replace(gpt2(1e-3, seed), loss=nll_of_logits)


def bert(seed: int) -> Setup:
    """HF BERT classifier (2 layers, width 64): which of two stdlib files a window is from."""
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(
        vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return hf_classifier(BertForSequenceClassification, cfg, 2, which_file_windows(48, seed))


def roberta(seed: int) -> Setup:
    """HF RoBERTa classifier (4 layers, width 64) on BERT's task: which of two stdlib files a
    48-byte window is from, AdamW 1e-3."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    cfg = RobertaConfig(
        vocab_size=256, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64 + 2,  # RoBERTa counts from pad + 1
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return hf_classifier(RobertaForSequenceClassification, cfg, 2, which_file_windows(48, seed))


def albert(seed: int) -> Setup:
    """HF ALBERT classifier (one layer's weights shared by 6, width 64, factorised 32-wide
    embeddings) on BERT's which-file task, AdamW 1e-3."""
    from transformers import AlbertConfig, AlbertForSequenceClassification

    cfg = AlbertConfig(
        vocab_size=256, embedding_size=32, hidden_size=64, num_hidden_layers=6,
        num_attention_heads=4, intermediate_size=128, max_position_embeddings=64,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0,
    )  # fmt: skip
    return hf_classifier(AlbertForSequenceClassification, cfg, 2, which_file_windows(48, seed))


def efficientnet(seed: int) -> Setup:
    """HF EfficientNet (B0's blocks at width 0.25 and depth 0.3: 7 MBConv blocks, BatchNorm,
    SiLU, squeeze-excite) from its config, on 32x32 digits, batch 32, AdamW 1e-3.

    Its ``_init_weights`` draws every BatchNorm gain from N(0, 0.02), as it does the
    convolutions' weights; with the config's BatchNorm eps of 1e-3 no norm can restore the
    scale, and the signal shrinks block by block (1e-31 at the head of the full B0)."""
    from transformers import EfficientNetConfig, EfficientNetForImageClassification
    from transformers.models.efficientnet.modeling_efficientnet import round_filters

    cfg = EfficientNetConfig(
        image_size=32, num_channels=3, width_coefficient=0.25, depth_coefficient=0.3,
        dropout_rate=0.0, drop_connect_rate=0.0,
    )  # fmt: skip
    cfg.hidden_dim = round_filters(cfg, 1280)  # the head's width at this width coefficient
    return hf_classifier(
        EfficientNetForImageClassification,
        cfg,
        10,
        digit_images(32, seed, batch=32),
        loss=ce_pixels,
    )


def segformer(seed: int) -> Setup:
    """HF SegFormer classifier (4 stages of width 16-128, one block each) on 32x32 digits,
    AdamW 1e-3. Its efficient attention shrinks the keys by 8, 4, 2, 1 per stage: on these
    maps (8x8 down to 1x1) every stage attends to a single key, so its queries and keys get
    no gradient (1e-13) while the model learns."""
    from transformers import SegformerConfig, SegformerForImageClassification

    cfg = SegformerConfig(
        num_channels=3, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
        decoder_hidden_size=64,
    )  # fmt: skip
    return hf_classifier(
        SegformerForImageClassification, cfg, 10, digit_images(32, seed), loss=ce_pixels
    )


def levit(seed: int) -> Setup:
    """HF LeViT (3 stages of width 32, 48, 64; BatchNorm, Hardswish, subsampling attention)
    on 32x32 digits, AdamW 1e-3. Its 16x patch embedding leaves 2x2 tokens and the first
    subsampling 1x1: the later attention has one key, its biases and queries no gradient."""
    from transformers import LevitConfig, LevitForImageClassification

    cfg = LevitConfig(
        image_size=32, num_channels=3, patch_size=16, hidden_sizes=[32, 48, 64],
        num_attention_heads=[1, 2, 2], depths=[1, 1, 1], key_dim=[8, 8, 8],
        down_ops=[["Subsample", 8, 32 // 8, 4, 2, 2], ["Subsample", 8, 48 // 8, 4, 2, 2]],
    )  # fmt: skip
    return hf_classifier(
        LevitForImageClassification, cfg, 10, digit_images(32, seed), loss=ce_pixels
    )


def vit(seed: int) -> Setup:
    """HF ViT (2 layers, width 64, 4x4 patches) on 16x16 three-channel digits, AdamW 1e-3."""
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=64, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=128,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return hf_classifier(ViTForImageClassification, cfg, 10, digit_images(16, seed), loss=ce_pixels)


def gpt2_epoch_schedule_per_batch(seed: int) -> Setup:
    """HF GPT-2 as :func:`gpt2` at AdamW 1e-3 under ``StepLR(step_size=30, gamma=0.1)``, a
    schedule sized in epochs, stepped after every batch: the rate falls tenfold every 30
    steps (1e-9 by step 180)."""
    setup = gpt2(1e-3, seed)
    setup.scheduler = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
    return setup


def gpt2_never_zeroed(seed: int) -> Setup:
    """HF GPT-2 as :func:`gpt2` at AdamW 1e-3, in a loop that never zeroes its gradients."""
    setup = gpt2(1e-3, seed)
    setup.zero_grad = False
    return setup


def llama_bf16(seed: int) -> Setup:
    """HF Llama as :func:`llama` with every weight in bfloat16 (no float32 copy) under AdamW
    1e-4: steps under 1/256 of a weight round to nothing in bfloat16."""
    setup = llama(seed)
    setup.model.to(torch.bfloat16)
    setup.optimizer = torch.optim.AdamW(setup.model.parameters(), lr=1e-4)
    return setup


def llama(seed: int, layers: int = 2) -> Setup:
    """HF Llama byte LM (``layers`` layers, width 64: RMSNorm, SwiGLU, rotary positions,
    grouped-query attention) on 64-byte stdlib windows, AdamW 1e-3."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=172, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg)
    return Setup(model, torch.optim.AdamW(model.parameters(), lr=1e-3), byte_windows(64, seed))


def convnext(seed: int) -> Setup:
    """HF ConvNeXt (2 stages of width 16, 32; LayerScale at its 1e-6 init) on 16x16 digits,
    AdamW 1e-3."""
    from transformers import ConvNextConfig, ConvNextForImageClassification

    cfg = ConvNextConfig(
        num_channels=3, hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, patch_size=2,
    )  # fmt: skip
    return hf_classifier(
        ConvNextForImageClassification, cfg, 10, digit_images(16, seed), loss=ce_pixels
    )


def mobilenet_v2(seed: int) -> Setup:
    """HF MobileNetV2 (width 0.35: inverted residuals, depthwise convs, BatchNorm, ReLU6) on
    32x32 digits, AdamW 1e-3: five stride-2 stages take its maps from 16x16 to 1x1."""
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    cfg = MobileNetV2Config(
        num_channels=3, image_size=32, depth_multiplier=0.35, classifier_dropout_prob=0.0,
    )  # fmt: skip
    return hf_classifier(
        MobileNetV2ForImageClassification, cfg, 10, digit_images(32, seed), loss=ce_pixels
    )


def _resnet_model(hidden: list[int]) -> nn.Module:
    """HF ResNet with basic blocks, one block per stage of width ``hidden[i]``, 10 classes."""
    from transformers import ResNetConfig, ResNetForImageClassification

    cfg = ResNetConfig(
        num_channels=3, embedding_size=16, hidden_sizes=hidden, depths=[1] * len(hidden),
        layer_type="basic",
    )  # fmt: skip
    cfg.num_labels = 10
    return ResNetForImageClassification(cfg)


def resnet(seed: int, lr: float = 0.05) -> Setup:
    """HF ResNet (BatchNorm, 2 stages) on 32x32 digits, SGD ``lr`` + momentum."""
    model = _resnet_model([16, 32])
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return Setup(model, opt, digit_images(32, seed), loss=ce_pixels)


def resnet_eval_mode(seed: int) -> Setup:
    """HF ResNet as :func:`resnet`, trained in eval mode (``model.train()`` forgotten): its
    BatchNorm layers normalise with their initial running statistics, mean 0 and variance 1."""
    setup = resnet(seed)
    setup.eval_mode = True
    return setup


def resnet_softmax_before_loss(seed: int) -> Setup:
    """HF ResNet as :func:`resnet`, its logits through a softmax before ``cross_entropy``."""
    return dataclasses.replace(resnet(seed), loss=ce_of_probabilities)


def resnet_weight_decay(seed: int, label_noise: float = 0.0) -> Setup:
    """HF ResNet as :func:`resnet` under the CIFAR recipe: SGD 0.1, momentum 0.9, weight decay
    5e-4; with ``label_noise``, each label is redrawn at random that often."""
    model = _resnet_model([16, 32])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    batches = digit_images(32, seed)
    if label_noise:
        batches = noisy_labels(batches, label_noise, 10, seed)
    return Setup(model, opt, batches, loss=ce_pixels)


def resnet50_small_images(seed: int) -> Setup:
    """HF ResNet-50 (the ImageNet config: bottlenecks, BatchNorm) on 32x32 digits, batch 16,
    SGD at the ImageNet rate scaled to the batch (0.1 x 16 / 256) + momentum and weight decay,
    no warm-up: ImageNet's stem and five stride-2 stages leave 1x1 maps at the last stage."""
    from transformers import ResNetConfig, ResNetForImageClassification

    cfg = ResNetConfig()
    cfg.num_labels = 10
    model = ResNetForImageClassification(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.1 * 16 / 256, momentum=0.9, weight_decay=1e-4)
    return Setup(model, opt, digit_images(32, seed, batch=16), loss=ce_pixels)


def lstm_lm(seed: int) -> Setup:
    """word_language_model's defaults (SGD lr 20, clip 0.25, bptt 35, batch 20), byte vocab."""
    model = RNNModel("LSTM", 256, 64, 64, 2)
    opt = torch.optim.SGD(model.parameters(), lr=20.0)
    return Setup(model, opt, bptt_batches(35, 20), loss=_carried_hidden_loss(), clip=0.25)


def residual_mlp(seed: int) -> Setup:
    """12 pre-LN residual MLP blocks at PyTorch's default init on digits, Adam 1e-3."""
    model = nn.Sequential(
        nn.Linear(64, 64), *[PreLNBlock(64, 128) for _ in range(12)], nn.LayerNorm(64),
        nn.Linear(64, 10),
    )  # fmt: skip
    return Setup(model, torch.optim.Adam(model.parameters(), lr=1e-3), digit_vectors(seed))


def relu_mlp(seed: int) -> Setup:
    """A 3-layer ReLU MLP at PyTorch's default init on digits, SGD 0.05 + momentum."""
    model = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return Setup(model, opt, digit_vectors(seed))


def sigmoid_cnn(seed: int) -> Setup:
    """12 conv3x3 + sigmoid layers at default init: each sigmoid passes at most 1/4 back."""
    layers: list[nn.Module] = []
    for i in range(12):
        layers += [nn.Conv2d(3 if i == 0 else 16, 16, 3, padding=1), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return Setup(model, opt, digit_images(8, seed))


def resnet_no_norm(seed: int, scale: float) -> Setup:
    """HF ResNet with every BatchNorm removed and convs at ``scale`` x He init.

    No norm rescales the residual sums, so the forward signal and the gradient grow
    with depth."""
    model = _resnet_model([16, 32, 64])
    for mod in list(model.modules()):
        for child, sub in list(mod.named_children()):
            if isinstance(sub, nn.BatchNorm2d):
                setattr(mod, child, nn.Identity())
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                mod.weight.mul_(scale)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return Setup(model, opt, digit_images(32, seed), loss=ce_pixels)


def dead_relu(seed: int, shift: float) -> Setup:
    """Linear -> LayerNorm -> ReLU blocks whose LayerNorm shift (beta) starts at ``shift``.

    Normalised pre-activations ~N(shift, 1) are almost never positive."""
    mods: list[nn.Module] = [nn.Linear(64, 128)]
    for _ in range(3):
        norm = nn.LayerNorm(128)
        nn.init.constant_(norm.bias, shift)
        mods += [norm, nn.ReLU(), nn.Linear(128, 128)]
    mods[-1] = nn.Linear(128, 10)
    model = nn.Sequential(*mods)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return Setup(model, opt, digit_vectors(seed))


def rnn_lm(seed: int, bptt: int) -> Setup:
    """word_language_model with ``RNN_TANH`` over ``bptt``-byte windows, clip 0.25.

    lr 5, not the recipe's 20: at 20 this tanh RNN diverges (loss ~12 > ln 256), and the
    case is meant to learn local bytes while forgetting distant ones.
    """
    model = RNNModel("RNN_TANH", 256, 64, 64, 1)
    opt = torch.optim.SGD(model.parameters(), lr=5.0)
    return Setup(model, opt, bptt_batches(bptt, 10), loss=_carried_hidden_loss(), clip=0.25)


def transformer_lm(seed: int, lr: float, norm_first: bool, layers: int, length: int) -> Setup:
    """Causal ``nn.TransformerEncoder`` byte LM (width 64), Adam at ``lr`` without warm-up."""
    model = CausalTransformerLM(layers, 64, 4, length, norm_first=norm_first)
    return Setup(model, torch.optim.Adam(model.parameters(), lr=lr), byte_windows(length, seed))


def ddpm_mlp(seed: int) -> Setup:
    """A DDPM noise predictor (:class:`NoisePredictor`) on standardised digits vectors, batch
    128, AdamW 1e-3."""
    model = NoisePredictor()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return Setup(model, opt, digit_vectors(seed, batch=128), loss=_denoising_loss(seed))


def fp16(seed: int, scale: float) -> Setup:
    """A ReLU MLP in float16 with a static loss scale ``scale`` and no overflow check.

    That is what a fixed ``loss_scale`` does: the scaled gradients overflow float16's
    65504 once the logits grow."""
    model = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    ).half()
    get = digit_vectors(seed)

    def batches(i: int) -> Batch:
        x, y = get(i)
        return x.half(), y

    def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x).float(), y)

    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return Setup(model, opt, batches, loss=loss, loss_scale=scale)
