"""LoRA through peft: zero-initialised adapters on a frozen base are recorded and judged
as the healthy training they are."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradwatch as gw

from ._reference import tiny_llama

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")


def _lora_llama() -> torch.nn.Module:
    base = tiny_llama()
    lora = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj", "down_proj", "lm_head"]
    )
    return peft.get_peft_model(base, lora)


def test_lora_adapters_are_the_layers_and_their_zero_start_draws_no_finding() -> None:
    """Only the adapters train: they are the recorded layers (lora_A random, lora_B zero at
    the start, so its first update ratio is a step over zero weights); 60 steps of AdamW
    learn to count (each token the previous one plus 1) and draw no warning or critical
    finding."""
    model = _lora_llama()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(60):
            x = (torch.randint(0, 64, (4, 1), generator=g) + torch.arange(32)) % 64
            loss = model(input_ids=x, labels=x).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
            losses.append(loss.item())
    trace = w.trace
    assert losses[-1] < 0.5 * losses[0]
    names = [layer.name for layer in trace.layers]
    assert len(names) == 18 and all(".lora_A." in n or ".lora_B." in n for n in names)
    # No adapter is followed by an activation: the MLP's SiLU computes on the frozen
    # gate_proj's output (it was claimed by the last adapter to run, v_proj's lora_B).
    assert all(layer.activation is None for layer in trace.layers)
    first_norms = trace.matrix("weight_norm")[0]
    b_cols = [i for i, n in enumerate(names) if ".lora_B." in n]
    assert np.all(first_norms[b_cols] == 0.0)
    findings = gw.diagnose(trace)
    assert [f.rule for f in findings if f.severity != "info"] == []
