"""Corpus models trained with the recipe of a typical Hugging Face training script.

The rest of the corpus trains with dropout off (deterministic runs) and a constant AdamW
rate. Scripts built on the HF Trainer train with the configs' dropout (0.1), AdamW with
weight decay 0.01 on the weight matrices only (not biases or norm gains), a linear warm-up
over the first 10% of the steps then a cosine decay to 0, and the Trainer's gradient
clipping at norm 1.0. Each must learn and draw no warning: near the end such a classifier's
batches are either all right or hold a mistake, its gradient norm swinging 100x between
them, which read as a "felt" exploding gradient before (HF RoBERTa below).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .data import Batch, byte_windows, which_file_windows
from .models import Setup

#: The recipe's steps (its warm-up is the first tenth of them).
STEPS = 300


def _hf_recipe(model: nn.Module, batches: Callable[[int], Batch]) -> Setup:
    """``model`` under AdamW 5e-4 (weight decay 0.01 on matrices), 10% warm-up then cosine
    decay over :data:`STEPS`, clipping at 1.0."""
    from transformers import get_cosine_schedule_with_warmup

    matrices = [p for p in model.parameters() if p.ndim >= 2]
    others = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": 0.01}, {"params": others, "weight_decay": 0.0}],
        lr=5e-4,
    )
    return Setup(
        model,
        opt,
        batches,
        clip=1.0,
        scheduler=lambda o: get_cosine_schedule_with_warmup(o, STEPS // 10, STEPS),
    )


def roberta_hf_recipe(seed: int) -> Setup:
    """HF RoBERTa (4 layers, width 64, its config's dropout 0.1) on BERT's which-file task."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    cfg = RobertaConfig(
        vocab_size=256, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64 + 2,  # RoBERTa counts from pad + 1
    )  # fmt: skip
    cfg.num_labels = 2
    return _hf_recipe(RobertaForSequenceClassification(cfg), which_file_windows(48, seed))


def gpt2_hf_recipe(seed: int) -> Setup:
    """HF GPT-2 byte LM (4 layers, width 64, its config's dropout 0.1) on 64-byte windows."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=256, n_positions=64, n_embd=64, n_layer=4, n_head=4, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return _hf_recipe(GPT2LMHeadModel(cfg), byte_windows(64, seed))
