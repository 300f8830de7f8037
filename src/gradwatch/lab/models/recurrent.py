"""Recurrent nets: a vanilla RNN, an LSTM or a GRU, read out from the last time step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Cell = Literal["rnn_tanh", "rnn_relu", "lstm", "gru"]
CELLS: tuple[str, ...] = Cell.__args__  # type: ignore[attr-defined]
RecurrentInit = Literal["default", "identity", "orthogonal"]


@dataclass(frozen=True)
class RecurrentConfig:
    """Shape and initialisation of a :class:`RecurrentNet`."""

    # The recurrence: vanilla tanh/ReLU RNN (Elman), LSTM (Hochreiter 1997) or GRU (Cho 2014).
    cell: Cell = "rnn_tanh"
    # Stacked recurrent layers; one is enough to show (and fix) vanishing through time.
    layers: int = 1
    # Hidden size: 32 solves the lab tasks at short lengths and stays fast on CPU.
    hidden: int = 32
    # Hidden-to-hidden init. "identity" is IRNN (Le et al., 2015: W_hh = I, biases 0).
    init: RecurrentInit = "default"
    # Multiplies W_hh after init: >1 pushes a vanilla RNN into the exploding regime
    # (Pascanu et al., 2013: explosion needs spectral radius > 1 for tanh).
    recurrent_scale: float = 1.0
    # Input-weight std under init="identity". Le et al. (2015) use 0.001; so small an input
    # leaves a fresh IRNN's state near zero, and on the lab's CPU budgets it learns faster
    # from 0.1 (measured on the adding problem; see docs/studies.md).
    input_std: float = 0.1
    # LSTM forget-gate bias; 1.0 is the usual "remember by default" (Gers et al., 2000).
    forget_bias: float = 1.0


class RecurrentNet(nn.Module):
    """``nn.RNN``/``nn.LSTM``/``nn.GRU`` over (B, T, F) inputs, a Linear head on the last step.

    Example:
        >>> import torch
        >>> net = RecurrentNet(RecurrentConfig(cell="lstm", hidden=8), 2, out_features=1)
        >>> net(torch.zeros(4, 10, 2)).shape
        torch.Size([4, 1])
    """

    def __init__(self, config: RecurrentConfig, in_features: int, out_features: int) -> None:
        super().__init__()
        if config.layers < 1 or config.hidden < 1:
            raise ValueError(
                f"RecurrentConfig layers={config.layers}, hidden={config.hidden} must be >= 1"
            )
        self.config = config
        size = {"input_size": in_features, "hidden_size": config.hidden}
        self.rnn: nn.RNN | nn.LSTM | nn.GRU
        if config.cell in ("rnn_tanh", "rnn_relu"):
            nonlinearity = config.cell.removeprefix("rnn_")
            self.rnn = nn.RNN(
                **size, num_layers=config.layers, nonlinearity=nonlinearity, batch_first=True
            )
        elif config.cell == "lstm":
            self.rnn = nn.LSTM(**size, num_layers=config.layers, batch_first=True)
        elif config.cell == "gru":
            self.rnn = nn.GRU(**size, num_layers=config.layers, batch_first=True)
        else:
            raise ValueError(f"RecurrentConfig.cell={config.cell!r}: use one of {list(CELLS)}")
        self.head = nn.Linear(config.hidden, out_features)
        self._init_recurrent()

    def _init_recurrent(self) -> None:
        h = self.config.hidden
        with torch.no_grad():
            for name, param in self.rnn.named_parameters():
                if name.startswith("weight_hh"):
                    # weight_hh stacks one (h, h) block per gate: initialise each block alike.
                    for block in param.split(h, dim=0):
                        if self.config.init == "identity":
                            block.copy_(torch.eye(h))
                        elif self.config.init == "orthogonal":
                            nn.init.orthogonal_(block)
                    param.mul_(self.config.recurrent_scale)
                elif name.startswith("bias") and self.config.init == "identity":
                    param.zero_()
                elif name.startswith("weight_ih") and self.config.init == "identity":
                    nn.init.normal_(param, 0.0, self.config.input_std)
            if isinstance(self.rnn, nn.LSTM):
                for name, param in self.rnn.named_parameters():
                    if name.startswith("bias_ih"):  # gate order i, f, g, o
                        param[h : 2 * h].fill_(self.config.forget_bias)
                    elif name.startswith("bias_hh"):
                        param[h : 2 * h].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, T, H)
        return self.head(out[:, -1])  # (B, out)
