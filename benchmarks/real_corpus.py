"""The real-architecture diagnosis corpus: models people actually train, healthy or broken.

Where ``diagnosis_corpus.py`` builds toy MLPs and RNNs broken by construction, this corpus
builds the architectures users bring: Hugging Face GPT-2, BERT, ViT and ResNet (from configs,
random init, nothing downloaded), PyTorch's word-language-model LSTM recipe, pre-LN residual
MLPs and post-LN transformers at PyTorch's default init. Each trains for at most a few hundred
CPU steps on data that ships with the environment: scikit-learn's digits, the bytes of
Python's own standard library, and byte windows drawn from it.

Every case carries an independent check (``Case.check``) computed from the training loop's
own losses, gradients and probes, never from gradwatch: a healthy case must really learn, a
broken one must really be broken (loss at chance, non-finite values, a failed memory probe).
The tests (``tests/diagnosis/test_real_corpus.py``) assert both the check and the diagnosis.

Run: ``PYTHONPATH=src python benchmarks/diagnosis_corpus.py --corpus real [--only NAME]``
prints this corpus' confusion table (``--corpus both``, the default, prints the toy one too).
"""

from __future__ import annotations

import os

# Build every Hugging Face model from its config: nothing may reach the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import math
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import gradwatch as gw
from gradwatch.diagnosis import Finding
from gradwatch.trace import Trace

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]


# ---------------------------------------------------------------------- data
@cache
def _digits_images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits as (N, 3, size, size) standardised images (bilinear upsampling of the 8x8)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    xt = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    xt = F.interpolate(xt, size=(size, size), mode="bilinear", align_corners=False)
    xt = (xt - xt.mean()) / xt.std()
    return xt.expand(-1, 3, -1, -1).contiguous(), torch.tensor(y, dtype=torch.long)


def digit_images(size: int, seed: int, batch: int = 64) -> Callable[[int], Batch]:
    """Random batches of digits images, (B, 3, size, size) and labels (B,)."""
    x, y = _digits_images(size)
    gen = torch.Generator().manual_seed(seed)

    def get(_: int) -> Batch:
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        return x[idx], y[idx]

    return get


def digit_vectors(seed: int, batch: int = 64) -> Callable[[int], Batch]:
    """Random batches of standardised 64-pixel digits vectors (B, 64) and labels (B,)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)

    def get(_: int) -> Batch:
        idx = torch.randint(0, len(xt), (batch,), generator=gen)
        return xt[idx], yt[idx]

    return get


def _stdlib_files() -> list[Path]:
    """The standard library's top-level ``.py`` files, sorted by name (deterministic)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    if not files:
        raise RuntimeError(f"no .py files under the stdlib path {root}; the corpus needs them")
    return files


@cache
def stdlib_bytes(limit: int = 1_000_000) -> torch.Tensor:
    """The first ``limit`` bytes of the concatenated stdlib sources, as int64 tokens 0..255."""
    chunks, total = [], 0
    for path in _stdlib_files():
        chunks.append(path.read_bytes())
        total += len(chunks[-1])
        if total >= limit:
            break
    data = b"".join(chunks)[:limit]
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


def byte_windows(length: int, seed: int, batch: int = 16) -> Callable[[int], Batch]:
    """Random stdlib windows: inputs (B, length) and next-byte targets (B, length)."""
    data = stdlib_bytes()
    gen = torch.Generator().manual_seed(seed)

    def get(_: int) -> Batch:
        start = torch.randint(0, len(data) - length - 1, (batch, 1), generator=gen)
        w = data[start + torch.arange(length + 1)]  # (B, length + 1)
        return w[:, :-1], w[:, 1:]

    return get


def bptt_batches(bptt: int, batch: int) -> Callable[[int], Batch]:
    """word_language_model's ``batchify`` + ``get_batch``: consecutive (bptt, B) chunks.

    The stream is cut into ``batch`` columns; step i reads rows ``i*bptt .. (i+1)*bptt`` of
    every column (wrapping around), so a carried hidden state continues the same text.
    """
    data = stdlib_bytes()
    n = len(data) // batch
    cols = data[: n * batch].view(batch, n).t().contiguous()  # (N, B)

    def get(i: int) -> Batch:
        s = (i * bptt) % (n - bptt - 1)
        return cols[s : s + bptt], cols[s + 1 : s + 1 + bptt]

    return get


@cache
def _two_files() -> tuple[torch.Tensor, torch.Tensor]:
    """Bytes of two stdlib files of different kinds: prose-heavy code and tables of code points."""
    root = Path(sysconfig.get_paths()["stdlib"])
    a, b = (root / "textwrap.py").read_bytes(), (root / "stringprep.py").read_bytes()
    return (
        torch.frombuffer(bytearray(a), dtype=torch.uint8).long(),
        torch.frombuffer(bytearray(b), dtype=torch.uint8).long(),
    )


def which_file_windows(length: int, seed: int, batch: int = 32) -> Callable[[int], Batch]:
    """Byte windows (B, length) labelled 0 or 1 by the stdlib file they come from."""
    files = _two_files()
    gen = torch.Generator().manual_seed(seed)

    def get(_: int) -> Batch:
        y = torch.randint(0, 2, (batch,), generator=gen)
        rows = []
        for label in y.tolist():
            src = files[label]
            s = int(torch.randint(0, len(src) - length, (1,), generator=gen))
            rows.append(src[s : s + length])
        return torch.stack(rows), y

    return get


# ---------------------------------------------------------------------- losses
def _ce_logits(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Cross-entropy of a model returning logits (a tensor or an HF output with ``.logits``)."""
    x, y = batch
    out = model(x)
    logits = out if isinstance(out, torch.Tensor) else out.logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def _ce_pixels(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Cross-entropy of an HF image classifier called with ``pixel_values``."""
    x, y = batch
    return F.cross_entropy(model(pixel_values=x).logits, y)


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


# ---------------------------------------------------------------------- set-ups
@dataclass
class Setup:
    """What one case trains: model, optimizer, batches, loss, and the user's own clipping."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    batches: Callable[[int], Batch]
    loss: LossFn = _ce_logits
    clip: float | None = None  # torch.nn.utils.clip_grad_norm_ max_norm, done by the user
    loss_scale: float = 1.0  # static loss scale (unscaled by hand before the step)


def _gpt2(lr: float, seed: int, layers: int = 2) -> Setup:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=256, n_positions=64, n_embd=64, n_layer=layers, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    model = GPT2LMHeadModel(cfg)
    return Setup(model, torch.optim.AdamW(model.parameters(), lr=lr), byte_windows(64, seed))


def _bert(seed: int) -> Setup:
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(
        vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    cfg.num_labels = 2  # a property of PretrainedConfig (it sizes id2label)
    model = BertForSequenceClassification(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return Setup(model, opt, which_file_windows(48, seed))


def _vit(seed: int) -> Setup:
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=64, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=128,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    cfg.num_labels = 10
    model = ViTForImageClassification(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return Setup(model, opt, digit_images(16, seed), loss=_ce_pixels)


def _resnet_model(hidden: list[int]) -> nn.Module:
    from transformers import ResNetConfig, ResNetForImageClassification

    cfg = ResNetConfig(
        num_channels=3, embedding_size=16, hidden_sizes=hidden, depths=[1] * len(hidden),
        layer_type="basic",
    )  # fmt: skip
    cfg.num_labels = 10
    return ResNetForImageClassification(cfg)


def _resnet(seed: int) -> Setup:
    model = _resnet_model([16, 32])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return Setup(model, opt, digit_images(32, seed), loss=_ce_pixels)


def _lstm_lm(seed: int) -> Setup:
    model = RNNModel("LSTM", 256, 64, 64, 2)
    opt = torch.optim.SGD(model.parameters(), lr=20.0)
    return Setup(model, opt, bptt_batches(35, 20), loss=_carried_hidden_loss(), clip=0.25)


def _residual_mlp(seed: int) -> Setup:
    model = nn.Sequential(
        nn.Linear(64, 64), *[PreLNBlock(64, 128) for _ in range(12)], nn.LayerNorm(64),
        nn.Linear(64, 10),
    )  # fmt: skip
    return Setup(model, torch.optim.Adam(model.parameters(), lr=1e-3), digit_vectors(seed))


def _relu_mlp(seed: int) -> Setup:
    model = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return Setup(model, opt, digit_vectors(seed))


def _sigmoid_cnn(seed: int) -> Setup:
    layers: list[nn.Module] = []
    for i in range(12):
        layers += [nn.Conv2d(3 if i == 0 else 16, 16, 3, padding=1), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return Setup(model, opt, digit_images(8, seed))


def _resnet_no_norm(seed: int, scale: float) -> Setup:
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
    return Setup(model, opt, digit_images(32, seed), loss=_ce_pixels)


def _dead_relu(seed: int, shift: float) -> Setup:
    mods: list[nn.Module] = [nn.Linear(64, 128)]
    for _ in range(3):
        norm = nn.LayerNorm(128)
        nn.init.constant_(norm.bias, shift)
        mods += [norm, nn.ReLU(), nn.Linear(128, 128)]
    mods[-1] = nn.Linear(128, 10)
    model = nn.Sequential(*mods)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return Setup(model, opt, digit_vectors(seed))


def _rnn_lm(seed: int, bptt: int) -> Setup:
    model = RNNModel("RNN_TANH", 256, 64, 64, 1)
    opt = torch.optim.SGD(model.parameters(), lr=5.0)
    return Setup(model, opt, bptt_batches(bptt, 10), loss=_carried_hidden_loss(), clip=0.25)


def _postln(
    seed: int, lr: float, norm_first: bool = False, layers: int = 6, length: int = 64
) -> Setup:
    model = CausalTransformerLM(layers, 64, 4, length, norm_first=norm_first)
    return Setup(model, torch.optim.Adam(model.parameters(), lr=lr), byte_windows(length, seed))


def _fp16(seed: int, scale: float) -> Setup:
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


def goes_nonfinite() -> Check:
    """Some step's gradient has a NaN/inf entry (the loop's own ``isfinite`` check)."""

    def check(run: Run) -> tuple[bool, str]:
        bad = [i for i, ok in enumerate(run.grads_finite) if not ok]
        first = bad[0] if bad else None
        return bool(bad), f"non-finite gradients at {len(bad)} steps (first: {first})"

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
    healthy: bool = False  # no warning/critical finding allowed
    slow: bool = False  # over ~10 s on one thread: not in CI


CASES: tuple[Case, ...] = (
    # -- healthy: each really learns (the check) and must draw no warning.
    Case(
        "gpt2_lm",
        "HF GPT-2, 2 layers, width 64, byte LM on stdlib source (64-byte windows), AdamW 1e-3",
        lambda seed: _gpt2(1e-3, seed),
        learns(),
        healthy=True,
    ),
    Case(
        "bert_classifier",
        "HF BERT, 2 layers, width 64: which stdlib file a 48-byte window is from; converges",
        _bert,
        learns(0.3),
        healthy=True,
    ),
    Case(
        "vit_digits",
        "HF ViT, 2 layers, width 64, 4x4 patches of 16x16 digits, AdamW 1e-3",
        _vit,
        learns(),
        healthy=True,
    ),
    Case(
        "resnet_digits",
        "HF ResNet (basic blocks, BatchNorm), 2 stages, 32x32 digits, SGD 0.05 + momentum",
        _resnet,
        learns(),
        healthy=True,
    ),
    Case(
        "lstm_lm",
        "word_language_model recipe: 2-layer LSTM 64, bptt 35, SGD lr 20, clip_grad_norm_ 0.25",
        _lstm_lm,
        learns(),
        healthy=True,
    ),
    Case(
        "residual_mlp_default_init",
        "12 pre-LN residual MLP blocks, PyTorch default init, digits, Adam 1e-3",
        _residual_mlp,
        learns(),
        healthy=True,
    ),
    Case(
        "relu_mlp_default_init",
        "3-layer ReLU MLP (128 wide), PyTorch default init, digits, SGD 0.05 + momentum",
        _relu_mlp,
        learns(),
        healthy=True,
    ),
    Case(
        "preln_transformer_same_lr",
        "the post-LN case's twin with pre-LN (norm_first=True): same Adam 1e-2, no warm-up",
        lambda seed: _postln(seed, 1e-2, norm_first=True, layers=4, length=32),
        learns(),
        steps=150,
        healthy=True,
        slow=True,
    ),
    # -- broken by a realistic cause: the check confirms it without gradwatch.
    Case(
        "deep_sigmoid_cnn",
        "12 conv3x3 + sigmoid layers (16 channels), default init, 8x8 digits, SGD 0.1 + mom.",
        _sigmoid_cnn,
        at_chance(10),
        steps=120,
        expect=("vanishing_gradient",),
    ),
    Case(
        "resnet_no_norm_large_init",
        "HF ResNet, 3 stages, BatchNorm -> Identity, convs 2x He init, SGD 0.01 + momentum",
        lambda seed: _resnet_no_norm(seed, 2.0),
        goes_nonfinite(),
        steps=60,
        expect=("exploding_gradient",),
    ),
    Case(
        "gpt2_lr_too_high",
        "HF GPT-2 as gpt2_lm but AdamW lr 0.1 (no warm-up): loss spikes, stays at unigram",
        lambda seed: _gpt2(0.1, seed),
        no_context_learned(),
        expect=("unstable_updates",),
        slow=True,
    ),
    Case(
        "layernorm_shift_dead_relu",
        "Linear -> LayerNorm(bias -3) -> ReLU x3 on digits: the shift keeps units below 0",
        lambda seed: _dead_relu(seed, -3.0),
        both(dead_relu_probe(), at_chance(10)),
        expect=("dead_units",),
    ),
    Case(
        "tanh_rnn_lm_long_window",
        "word_language_model RNN_TANH 64, bptt 200, SGD lr 5, clip 0.25 (learns local bytes)",
        lambda seed: _rnn_lm(seed, 200),
        memory_probe(),
        steps=150,
        expect=("short_memory",),
    ),
    Case(
        "postln_transformer_no_warmup",
        "4-layer post-LN nn.TransformerEncoder byte LM, width 64, Adam 1e-2, no warm-up",
        lambda seed: _postln(seed, 1e-2, norm_first=False, layers=4, length=32),
        no_context_learned(),
        steps=150,
        expect=("vanishing_gradient",),
        slow=True,
    ),
    Case(
        "fp16_static_loss_scale",
        "ReLU MLP in float16, static loss scale 2**18 (no overflow check), SGD 0.05 + mom.",
        lambda seed: _fp16(seed, 2.0**18),
        goes_nonfinite(),
        expect=("nonfinite_gradient",),
    ),
)
REAL_CORPUS: dict[str, Case] = {c.name: c for c in CASES}


def record(case: Case, seed: int = 0) -> Run:
    """Train one case under ``gw.watch`` (in memory); keep the loop's own losses and checks."""
    torch.manual_seed(seed)
    setup = case.build(seed)
    params = [p for p in setup.model.parameters() if p.requires_grad]
    losses: list[float] = []
    finite: list[bool] = []
    t0 = time.perf_counter()
    with gw.watch(setup.model, setup.optimizer) as w:
        for step in range(case.steps):
            loss = setup.loss(setup.model, setup.batches(step))
            setup.optimizer.zero_grad()
            (loss * setup.loss_scale).backward()
            grads = [p.grad for p in params if p.grad is not None]
            if setup.loss_scale != 1.0:
                torch._foreach_div_(grads, setup.loss_scale)  # unscale by hand, no check
            finite.append(bool(torch.stack([g.isfinite().all() for g in grads]).all()))
            if setup.clip is not None:
                torch.nn.utils.clip_grad_norm_(params, setup.clip)
            setup.optimizer.step()
            w.log(loss=loss)
            losses.append(float(loss.detach()))
    trace = w.trace
    findings = gw.diagnose(trace)
    return Run(setup, losses, finite, trace, findings, time.perf_counter() - t0)
