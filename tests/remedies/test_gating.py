"""nn.RNN -> nn.LSTM / nn.GRU with the same sizes, and a forward that keeps working."""

from __future__ import annotations

import pytest
import torch
from remedies_helpers import same_state, snapshot
from torch import nn

from gradwatch.remedies import LSTMAsRNN, UnsupportedModelError, replace_rnn


class _Seq(nn.Module):
    """A model whose forward does ``out, h = self.rnn(x)``, as RNN code does."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(3, 5, num_layers=2, batch_first=True, bidirectional=True, dropout=0.1)
        self.head = nn.Linear(10, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, h = self.rnn(x)
        return self.head(out[:, -1]) + h.sum()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sizes_are_kept_and_forward_still_works(cell: str) -> None:
    """Same input/hidden size, layers, batch_first, bidirectional, dropout; head untouched."""
    model = _Seq()
    before = snapshot(model)
    new = replace_rnn(model, cell)  # type: ignore[arg-type]
    inner = new.rnn.lstm if cell == "lstm" else new.rnn
    assert type(inner) is (nn.LSTM if cell == "lstm" else nn.GRU)
    for attr in ("input_size", "hidden_size", "num_layers", "batch_first", "bidirectional"):
        assert getattr(inner, attr) == getattr(model.rnn, attr)
    assert inner.dropout == model.rnn.dropout
    assert torch.equal(new.head.weight, model.head.weight)
    assert same_state(model, before)
    assert new(torch.randn(4, 7, 3)).shape == (4, 2)
    gates = 4 if cell == "lstm" else 3
    n_rnn = sum(p.numel() for p in model.rnn.parameters())
    assert sum(p.numel() for p in new.rnn.parameters()) == gates * n_rnn


def test_wrapper_returns_h_and_keeps_c() -> None:
    """LSTMAsRNN gives (out, h_n) equal to the LSTM's, and keeps c_n in last_cell_state."""
    lstm = nn.LSTM(3, 4)
    wrapped = LSTMAsRNN(lstm)
    x, h0 = torch.randn(6, 2, 3), torch.randn(1, 2, 4)
    out, h = wrapped(x, h0)
    ref_out, (ref_h, ref_c) = lstm(x, (h0, torch.zeros_like(h0)))
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h, ref_h)
    assert wrapped.last_cell_state is not None
    torch.testing.assert_close(wrapped.last_cell_state, ref_c)


def test_unwrapped_lstm_and_root_rnn() -> None:
    """wrap=False puts a plain nn.LSTM; a bare nn.RNN is replaced as the root."""
    assert type(replace_rnn(_Seq(), "lstm", wrap=False).rnn) is nn.LSTM
    assert type(replace_rnn(nn.RNN(2, 3), "gru")) is nn.GRU


def test_no_rnn_raises_naming_what_is_there() -> None:
    """Without nn.RNN the error says so and names the gated layers already present."""
    with pytest.raises(UnsupportedModelError, match=r"already has LSTM.*Supported: nn\.RNN"):
        replace_rnn(nn.Sequential(nn.LSTM(2, 3)))
    with pytest.raises(ValueError, match="cell"):
        replace_rnn(nn.RNN(2, 3), "transformer")  # type: ignore[arg-type]
