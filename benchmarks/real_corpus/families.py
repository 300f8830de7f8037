"""Architecture families beyond the first corpus, each healthy at its library's defaults.

Encoder-decoders (HF T5: relative position buckets, RMS-style layer norm without bias, no
biases anywhere; HF BART: post-LN with learned positions, tied embeddings), an audio model
(HF wav2vec2: a strided convolutional feature encoder with group norm, a convolutional
position embedding, then a transformer), a state-space language model (HF Mamba: selective
scan, depthwise causal convolution, RMSNorm; its reference PyTorch path, as
``mamba_ssm`` is not installed) and windowed attention (HF Swin: shifted windows, patch
merging), and two encoders beyond BERT's layout (HF DeBERTa-v2: disentangled relative
attention; HF ModernBERT: rotary positions, GeGLU, no biases, a dense -> GELU -> LayerNorm
classifier head started small). Each is built from its config at random init and trained as
a user would (AdamW 1e-3) on the same data as the rest of the corpus; each must learn and
draw no warning.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data import Batch, byte_windows, digit_images, which_file_windows
from .models import LossFn, Setup, ce_pixels, hf_classifier, nll_of_logits

#: Source and target halves of a 64-byte window for the encoder-decoders: the decoder
#: learns to continue the source (an LM conditioned on the first half).
_HALF = 32


def _seq2seq_batches(seed: int) -> tuple[Callable[[int], Batch], LossFn]:
    windows = byte_windows(2 * _HALF, seed)

    def batches(step: int) -> Batch:
        x, _ = windows(step)
        return x[:, :_HALF].contiguous(), x[:, _HALF:].contiguous()  # (B, 32) each

    def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
        source, target = batch
        return model(input_ids=source, labels=target).loss  # the model's own cross-entropy

    return batches, loss


def _adamw(model: nn.Module, batches: Callable[[int], Batch], loss: LossFn) -> Setup:
    return Setup(model, torch.optim.AdamW(model.parameters(), lr=1e-3), batches, loss=loss)


def t5(seed: int) -> Setup:
    """HF T5 (2 + 2 layers, width 64) continuing 32-byte stdlib windows, AdamW 1e-3."""
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(
        vocab_size=256, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
        num_heads=4, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0,
    )  # fmt: skip
    return _adamw(T5ForConditionalGeneration(cfg), *_seq2seq_batches(seed))


def bart(seed: int) -> Setup:
    """HF BART (2 + 2 layers, width 64) on T5's task, AdamW 1e-3."""
    from transformers import BartConfig, BartForConditionalGeneration

    cfg = BartConfig(
        vocab_size=256, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
        decoder_ffn_dim=128, max_position_embeddings=64, dropout=0.0, attention_dropout=0.0,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
    )  # fmt: skip
    return _adamw(BartForConditionalGeneration(cfg), *_seq2seq_batches(seed))


def wav2vec2(seed: int) -> Setup:
    """HF wav2vec2 classifier (conv encoder 32-32-32, 2 layers of width 64) on digits read
    as 1024-sample signals (each 32x32 image's first channel, row by row), AdamW 1e-3."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    cfg = Wav2Vec2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        conv_dim=(32, 32, 32), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3), num_labels=10,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        feat_proj_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    )  # fmt: skip
    images = digit_images(32, seed)

    def batches(step: int) -> Batch:
        x, y = images(step)
        return x[:, 0].reshape(x.shape[0], -1), y  # (B, 1024)

    def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
        signal, y = batch
        return F.cross_entropy(model(input_values=signal).logits, y)

    return _adamw(Wav2Vec2ForSequenceClassification(cfg), batches, loss)


def mamba(seed: int) -> Setup:
    """HF Mamba byte LM (2 layers, width 64, state 8) on 64-byte stdlib windows, AdamW 1e-3."""
    from transformers import MambaConfig, MambaForCausalLM

    cfg = MambaConfig(
        vocab_size=256, hidden_size=64, state_size=8, num_hidden_layers=2, expand=2,
        conv_kernel=4,
    )  # fmt: skip
    model = MambaForCausalLM(cfg)
    return Setup(model, torch.optim.AdamW(model.parameters(), lr=1e-3), byte_windows(64, seed))


def swin(seed: int) -> Setup:
    """HF Swin (2 stages of 2 blocks, width 32, 4x4 windows) on 32x32 digits, AdamW 1e-3."""
    from transformers import SwinConfig, SwinForImageClassification

    cfg = SwinConfig(
        image_size=32, patch_size=2, num_channels=3, embed_dim=32, depths=[2, 2],
        num_heads=[2, 4], window_size=4, num_labels=10, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, drop_path_rate=0.0,
    )  # fmt: skip
    model = SwinForImageClassification(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return Setup(model, opt, digit_images(32, seed), loss=ce_pixels)


def deberta(seed: int, lr: float = 1e-3) -> Setup:
    """HF DeBERTa-v2 classifier (2 layers, width 64) on BERT's task (which of two stdlib
    files a 48-byte window is from), AdamW at ``lr``."""
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    cfg = DebertaV2Config(
        vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    windows = which_file_windows(48, seed)
    return hf_classifier(DebertaV2ForSequenceClassification, cfg, 2, windows, lr=lr)


def modernbert(seed: int) -> Setup:
    """HF ModernBERT classifier (2 layers, width 64) on BERT's task, AdamW 1e-3 (the case
    adds its recipe's warm-up: without one its first steps overshoot, which
    ``unstable_updates`` rightly says)."""
    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    cfg = ModernBertConfig(
        vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64, pad_token_id=0, bos_token_id=0,
        eos_token_id=0, cls_token_id=0, sep_token_id=0,
    )  # fmt: skip
    return hf_classifier(ModernBertForSequenceClassification, cfg, 2, which_file_windows(48, seed))


def qwen2_large_init(seed: int) -> Setup:
    """HF Qwen2 byte LM (2 layers, width 64, grouped-query attention) built with
    ``initializer_range=1.0``, 50 times its default: its logits start at std ~8 and its loss
    at ~4x log(256). AdamW 1e-3 on 64-byte stdlib windows."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        bos_token_id=0, eos_token_id=0, pad_token_id=0, initializer_range=1.0,
    )  # fmt: skip
    model = Qwen2ForCausalLM(cfg)
    return Setup(model, torch.optim.AdamW(model.parameters(), lr=1e-3), byte_windows(64, seed))


def gemma2_nll_of_logits(seed: int) -> Setup:
    """HF Gemma 2 byte LM (2 layers, width 64, sliding window 32, its final logits
    soft-capped at 30: ``30 * tanh(logits / 30)``) under ``nll_loss`` of those logits with no
    log-softmax. The cap is a multiplication, not a layer's output, so the loss's graph does
    not show the logits; the loss falls below 0 toward -30. AdamW 1e-3."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    cfg = Gemma2Config(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=32,
        max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    model = Gemma2ForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return Setup(model, opt, byte_windows(64, seed), loss=nll_of_logits)
