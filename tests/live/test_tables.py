"""The live host tables hold what gw.load reads back from the run directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

import gradwatch as gw
from gradwatch.live.tables import HostTables
from gradwatch.recording import Flush
from gradwatch.recording import watch as record


class _Seq(nn.Module):
    """An LSTM and a head: recurrent profiles, sampled and per-step metrics."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 8, batch_first=True)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, T, 8)
        return self.head(out[:, -1])


def test_host_tables_trace_equals_the_loaded_run(tmp_path: Path) -> None:
    """Every metric, scalar and recurrent profile equals gw.load's, flush after flush."""
    torch.manual_seed(0)
    model = _Seq()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    tables = HostTables()
    compared: list[int] = []

    def compare(watch: gw.Watch, flush: Flush) -> None:
        meta = watch._meta("running")
        tables.add(flush.tables, len(meta["layers"]))
        got, want = tables.trace(meta), gw.load(tmp_path / "run")
        assert got.steps.tolist() == want.steps.tolist()
        assert got.metrics == want.metrics
        for m in want.metrics:
            np.testing.assert_array_equal(got.matrix(m), want.matrix(m), err_msg=m)
            for a, b in zip(got.measured(m), want.measured(m), strict=True):
                np.testing.assert_array_equal(a, b, err_msg=m)
        assert got.scalar_names == want.scalar_names
        for s in want.scalar_names:
            np.testing.assert_array_equal(got.scalar(s), want.scalar(s), err_msg=s)
        assert got.recurrent_layers == want.recurrent_layers
        for layer in want.recurrent_layers:
            for kind in want.profile_kinds(layer):
                a, b = got.input_grad_profile(layer, kind), want.input_grad_profile(layer, kind)
                np.testing.assert_array_equal(a.steps, b.steps)
                np.testing.assert_array_equal(a.values, b.values)
        compared.append(flush.end_step)

    with record(model, opt, tmp_path / "run", flush_every=7, sample_every=3, dense_steps=4) as w:
        w.add_flush_listener(compare)
        for step in range(30):
            x = torch.randn(4, 6, 3)
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss, **({"lr": 0.01} if step % 5 == 0 else {}))
            if step in (9, 10, 17):
                _ = w.trace  # a flush in mid-window: windows of uneven length
    assert compared[-1] == 30 and len(compared) >= 6
    assert gw.load(tmp_path / "run").recurrent_layers  # the profiles were compared
