"""Shared test set-up: one torch thread (CI has 2 cores), deterministic seeds."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _torch_single_thread() -> None:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
