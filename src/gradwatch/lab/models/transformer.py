"""A small transformer encoder with pre-LN or post-LN blocks (Xiong et al., 2020)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .common import Activation, make_activation

LNPlacement = Literal["pre", "post"]


@dataclass(frozen=True)
class TransformerConfig:
    """Shape of a :class:`TransformerEncoder`."""

    # Model width: 32 is enough for the lab's sequence tasks at CPU speed.
    d_model: int = 32
    # Attention heads; d_model must divide by it.
    heads: int = 2
    # Encoder blocks; post-LN's gradient trouble grows with depth (Xiong et al., 2020).
    layers: int = 2
    # Width of each block's feed-forward layer (the usual 2-4x d_model).
    ff: int = 64
    # "post" is the original (Vaswani et al., 2017): LN after each residual sum;
    # "pre" puts LN inside the branch, keeping an identity path from output to input.
    ln: LNPlacement = "pre"
    # Feed-forward activation.
    activation: Activation = "gelu"
    # Longest sequence the learned position embedding covers.
    max_len: int = 256


class Block(nn.Module):
    """Self-attention and feed-forward sub-layers, each with a residual and a LayerNorm."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.pre = config.ln == "pre"
        self.ln1 = nn.LayerNorm(config.d_model)
        # dropout=0: dropout would make runs depend on the RNG stream of each step.
        self.attn = nn.MultiheadAttention(config.d_model, config.heads, batch_first=True)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.ff = nn.Sequential(
            nn.Linear(config.d_model, config.ff),
            make_activation(config.activation),
            nn.Linear(config.ff, config.d_model),
        )

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.attn(x, x, x, need_weights=False)
        return out  # (B, T, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C)
        if self.pre:
            x = x + self._attend(self.ln1(x))
            return x + self.ff(self.ln2(x))
        x = self.ln1(x + self._attend(x))
        return self.ln2(x + self.ff(x))


class TransformerEncoder(nn.Module):
    """Embed (B, T, F) inputs, run the blocks, read out from the last position.

    Example:
        >>> import torch
        >>> cfg = TransformerConfig(d_model=8, heads=2, layers=1, ff=16)
        >>> TransformerEncoder(cfg, in_features=3, out_features=4)(torch.zeros(2, 5, 3)).shape
        torch.Size([2, 4])
    """

    def __init__(self, config: TransformerConfig, in_features: int, out_features: int) -> None:
        super().__init__()
        if config.d_model % config.heads:
            raise ValueError(
                f"TransformerConfig.d_model={config.d_model} must be divisible by "
                f"heads={config.heads}"
            )
        self.config = config
        self.embed = nn.Linear(in_features, config.d_model)
        self.pos = nn.Embedding(config.max_len, config.d_model)
        self.blocks = nn.Sequential(*(Block(config) for _ in range(config.layers)))
        # Pre-LN leaves the residual stream un-normalised: normalise once before the head.
        self.ln_f = nn.LayerNorm(config.d_model) if config.ln == "pre" else nn.Identity()
        self.head = nn.Linear(config.d_model, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F)
        T = x.shape[1]
        if self.config.max_len < T:
            raise ValueError(
                f"sequence length {T} exceeds TransformerConfig.max_len={self.config.max_len}"
            )
        positions = torch.arange(T, device=x.device)
        h = self.embed(x) + self.pos(positions)  # (B, T, C)
        h = self.ln_f(self.blocks(h))  # (B, T, C)
        return self.head(h[:, -1])  # (B, out)
