"""Gated recurrent units: replace ``nn.RNN`` by ``nn.LSTM`` or ``nn.GRU`` of the same sizes.

Gates give the gradient an additive path through time (the LSTM cell state, Hochreiter &
Schmidhuber 1997; the GRU update gate, Cho et al. 2014), so it no longer shrinks by the
same factor at every step as in a plain RNN (Bengio et al. 1994).

``nn.GRU`` has the interface of ``nn.RNN`` (``out, h_n = gru(x, h_0)``) and is put in
directly. ``nn.LSTM`` returns ``out, (h_n, c_n)``; to keep models that do
``out, h = self.rnn(x)`` working, it is wrapped in :class:`LSTMAsRNN`, which returns
``out, h_n``, takes ``h_0`` only (the cell state starts at zero) and keeps ``c_n`` in
``last_cell_state``. Pass ``wrap=False`` to put in a plain ``nn.LSTM`` when your forward
already unpacks ``(h, c)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ._common import UnsupportedModelError, copy_model, set_submodule

__all__ = ["LSTMAsRNN", "replace_rnn"]


class LSTMAsRNN(nn.Module):
    """An ``nn.LSTM`` with the call signature of ``nn.RNN``: ``out, h_n = m(x, h_0=None)``.

    The cell state starts at zero on every call; the last one is kept (detached) in
    ``last_cell_state`` for inspection. The LSTM is the ``lstm`` attribute, so its
    parameters are named ``lstm.weight_ih_l0`` etc.

    Example:
        >>> m = LSTMAsRNN(nn.LSTM(3, 5, batch_first=True))
        >>> out, h = m(torch.zeros(2, 7, 3))
        >>> tuple(out.shape), tuple(h.shape)
        ((2, 7, 5), (1, 2, 5))
    """

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.lstm = lstm
        self.last_cell_state: torch.Tensor | None = None
        # the attributes code commonly reads from an nn.RNN
        self.input_size = lstm.input_size
        self.hidden_size = lstm.hidden_size
        self.num_layers = lstm.num_layers
        self.batch_first = lstm.batch_first
        self.bidirectional = lstm.bidirectional

    def forward(
        self, x: torch.Tensor, h_0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if h_0 is None:
            out, (h_n, c_n) = self.lstm(x)
        else:
            out, (h_n, c_n) = self.lstm(x, (h_0, torch.zeros_like(h_0)))
        self.last_cell_state = c_n.detach()
        return out, h_n


def _gated_like(rnn: nn.RNN, cell: Literal["lstm", "gru"]) -> nn.LSTM | nn.GRU:
    w = rnn.weight_ih_l0
    cls = nn.LSTM if cell == "lstm" else nn.GRU
    return cls(
        input_size=rnn.input_size,
        hidden_size=rnn.hidden_size,
        num_layers=rnn.num_layers,
        bias=rnn.bias,
        batch_first=rnn.batch_first,
        dropout=rnn.dropout,
        bidirectional=rnn.bidirectional,
        device=w.device,
        dtype=w.dtype,
    )


def replace_rnn(
    model: nn.Module, cell: Literal["lstm", "gru"] = "lstm", *, wrap: bool = True
) -> nn.Module:
    """A copy of ``model`` with every ``nn.RNN`` replaced by a new LSTM or GRU.

    Sizes (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional),
    device and dtype are kept; the gated layer's weights are freshly initialised (an RNN's
    weights have no LSTM/GRU counterpart) and ``nonlinearity`` has no equivalent. All other
    weights are copied unchanged.

    Args:
        model: The model (or an ``nn.RNN`` itself); it is not modified.
        cell: ``"lstm"`` or ``"gru"``.
        wrap: For ``"lstm"``, wrap in :class:`LSTMAsRNN` so ``out, h = rnn(x)`` keeps working.

    Raises:
        UnsupportedModelError: No ``nn.RNN`` in the model.

    Example:
        >>> m = replace_rnn(nn.RNN(3, 5), "gru")
        >>> type(m).__name__
        'GRU'
    """
    if cell not in ("lstm", "gru"):
        raise ValueError(f"expected `cell` to be 'lstm' or 'gru' but got {cell!r}")
    rnns = [(n, m) for n, m in model.named_modules() if type(m) is nn.RNN]
    if not rnns:
        found = sorted({type(m).__name__ for m in model.modules() if isinstance(m, nn.RNNBase)})
        raise UnsupportedModelError(
            f"no nn.RNN to replace in {type(model).__name__}"
            + (f" (it already has {', '.join(found)})" if found else "")
            + ". Supported: nn.RNN modules (tanh or relu), replaced by nn.LSTM or nn.GRU."
        )
    new = copy_model(model)
    root: nn.Module = new
    for name, rnn in rnns:
        gated: nn.Module = _gated_like(rnn, cell)
        if cell == "lstm" and wrap:
            gated = LSTMAsRNN(gated)  # type: ignore[arg-type]
        if name == "":
            root = gated
        else:
            set_submodule(new, name, gated)
    return root
