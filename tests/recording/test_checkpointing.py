"""Activation (gradient) checkpointing records what the plain run records.

Hugging Face's ``gradient_checkpointing_enable()`` checkpoints each decoder layer's
``forward`` with ``torch.utils.checkpoint`` (``use_reentrant=False`` by default, ``True`` on
request): the blocks run again inside the backward pass. Statistics, activations and the
residual structure must not change.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.utils.checkpoint

import gradwatch as gw

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

METRICS = ("grad_norm", "weight_norm", "update_ratio", "act_mean", "act_std", "out_grad_norm")


def _run(checkpointing: str) -> gw.Trace:
    """Four steps of a tiny Llama; ``checkpointing``: "off", "default" (HF's: non-reentrant)
    or "reentrant"."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(cfg)
    if checkpointing == "default":
        model.gradient_checkpointing_enable()
    elif checkpointing == "reentrant":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(4):
            x = torch.randint(0, 256, (4, 32), generator=gen)
            out = model(input_ids=x, labels=x)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            w.log(loss=out.loss)
    return w.trace


def _branches(trace: gw.Trace) -> dict[str, str | None]:
    return {layer.name: layer.branch for layer in trace.layers}


def test_non_reentrant_checkpointing_records_the_same_run() -> None:
    """HF's default (non-reentrant) checkpointing: every statistic equal, same branches."""
    plain, ckpt = _run("off"), _run("default")
    for metric in METRICS:
        np.testing.assert_array_equal(ckpt.matrix(metric), plain.matrix(metric), err_msg=metric)
    np.testing.assert_array_equal(ckpt.scalar("loss"), plain.scalar("loss"))
    assert _branches(ckpt) == _branches(plain)
    assert any(_branches(plain).values())


def test_reentrant_checkpointing_records_the_same_statistics() -> None:
    """use_reentrant=True: the statistics are the plain run's too."""
    plain, ckpt = _run("off"), _run("reentrant")
    for metric in METRICS:
        np.testing.assert_array_equal(ckpt.matrix(metric), plain.matrix(metric), err_msg=metric)


def test_reentrant_checkpointing_finds_the_residual_branches() -> None:
    """use_reentrant=True builds a block's graph inside the backward pass, from a detached
    copy of its input; the recompute's output and that input (the fork of the block's first
    residual) give the same branches, and torch's CheckpointFunction is left as it was."""
    own = torch.utils.checkpoint.CheckpointFunction.__dict__.get("apply")
    assert _branches(_run("reentrant")) == _branches(_run("off"))
    assert torch.utils.checkpoint.CheckpointFunction.__dict__.get("apply") is own


class _Block(torch.nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln = torch.nn.LayerNorm(d)
        self.fc1 = torch.nn.Linear(d, 2 * d)
        self.act = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(self.ln(x))))


class _ResidualMLP(torch.nn.Module):
    """Residual blocks the user checkpoints by hand with torch.utils.checkpoint."""

    def __init__(self, reentrant: bool | None) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(4, 8)
        self.blocks = torch.nn.ModuleList([_Block(8) for _ in range(3)])
        self.head = torch.nn.Linear(8, 2)
        self.reentrant = reentrant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            if self.reentrant is None:
                h = block(h)
            else:
                h = torch.utils.checkpoint.checkpoint(block, h, use_reentrant=self.reentrant)
        return self.head(h)


@pytest.mark.parametrize("reentrant", [True, False])
def test_hand_checkpointed_blocks_keep_their_branches(reentrant: bool) -> None:
    """``checkpoint(block, h)`` in a user's own forward: same branches and statistics."""

    def run(mode: bool | None) -> gw.Trace:
        torch.manual_seed(0)
        model = _ResidualMLP(mode)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        x = torch.randn(16, 4)
        with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
            for _ in range(3):
                opt.zero_grad()
                model(x).pow(2).mean().backward()
                opt.step()
        return w.trace

    plain, ckpt = run(None), run(reentrant)
    assert _branches(ckpt) == _branches(plain)
    assert [b for b in _branches(plain).values() if b] == ["blocks.0"] * 3 + ["blocks.1"] * 3 + [
        "blocks.2"
    ] * 3
    for metric in ("grad_norm", "update_ratio", "act_mean"):
        np.testing.assert_array_equal(ckpt.matrix(metric), plain.matrix(metric), err_msg=metric)
