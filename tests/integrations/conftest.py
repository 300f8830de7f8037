"""Framework tests: nothing tries the network; torch's clip_grad_norm_ is put back."""

from __future__ import annotations

import os

import pytest
import torch

# Nothing may try the network (wandb, the Hub) from these tests.
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def clip_restored():  # type: ignore[no-untyped-def]
    """Check after the test that torch's clip_grad_norm_ is torch's again."""
    original = torch.nn.utils.clip_grad_norm_
    yield
    assert torch.nn.utils.clip_grad_norm_ is original
