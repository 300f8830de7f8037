"""A loss plateau from the first step of a model that started trained (resumed from its own
training) is told so, an info; one at the untrained level (labels the model cannot predict)
stays the warning that points at what the model is asked to learn."""

from __future__ import annotations

import pytest
import torch

import gradwatch as gw

from ._reference import tiny_llama

pytest.importorskip("transformers")


def _counting_llama_run(pretrain: int, noise: float, *, lora: bool = False) -> gw.Diagnosis:
    """A 2-layer HF Llama (vocabulary 64) on counting (each token the previous plus one,
    mod 64) with a share ``noise`` of the labels random: ``pretrain`` steps of AdamW 2e-2
    unwatched, then 60 watched steps of AdamW 1e-3, as a fine-tune resumed from them (of
    LoRA adapters, peft r=8 on q_proj and v_proj, when ``lora``)."""
    model = tiny_llama()
    g = torch.Generator().manual_seed(0)

    def loss() -> torch.Tensor:
        x = (torch.randint(0, 64, (4, 1), generator=g) + torch.arange(32)) % 64
        random = torch.rand(x.shape, generator=g) < noise
        labels = torch.where(random, torch.randint(0, 64, x.shape, generator=g), x)
        out: torch.Tensor = model(input_ids=x, labels=labels).loss
        return out

    opt = torch.optim.AdamW(model.parameters(), lr=2e-2)
    for _ in range(pretrain):
        opt.zero_grad()
        loss().backward()
        opt.step()
    if lora:
        peft = pytest.importorskip("peft")
        adapters = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
        model = peft.get_peft_model(model, adapters)
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=1e-3)
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(60):
            step_loss = loss()
            opt.zero_grad()
            step_loss.backward()
            opt.step()
            w.log(loss=step_loss)
    return gw.diagnose(w.trace)


def test_a_resumed_model_whose_loss_stays_is_told_it_started_trained() -> None:
    """Pretrained 100 steps on counting with 20% random labels (loss 1.36), then resumed:
    the loss stays near 1.4 from step 0, under half of log 64 = 4.16. It was told "look at
    what the model is asked to learn (labels it cannot predict ...)", a warning; now an info
    that it started trained. From an untrained start on random labels (4.16, never better)
    the warning stays."""
    d = _counting_llama_run(pretrain=100, noise=0.2)
    (plateau,) = [f for f in d if f.rule == "loss_plateau"]
    assert plateau.severity == "info" and plateau.evidence["cause"] == "trained_start"
    assert plateau.message.startswith("Loss plateau from a trained start: from step 0")
    assert "far below log(64) = 4.159" in plateau.message
    assert not [f for f in d if f.severity != "info"]
    untrained = _counting_llama_run(pretrain=0, noise=1.0)
    (plateau,) = [f for f in untrained if f.rule == "loss_plateau"]
    assert plateau.severity == "warning" and "look at what the model is asked" in plateau.message


def test_a_lora_fine_tune_of_a_trained_model_is_not_told_its_steps_overshoot() -> None:
    """The resumed run above as a LoRA fine-tune: the adapters' B matrices start at zero and,
    on gradients that are mostly noise (nothing left to learn), grow as a random walk, each
    step 1/sqrt(k) of their norm (0.12 near step 60). With a loss that does not progress that
    drew "Unstable updates ... the learning rate is too high" (and kept the plateau a
    warning); it is growth, and the run is the trained start it is."""
    d = _counting_llama_run(pretrain=100, noise=0.2, lora=True)
    assert not [f for f in d if f.severity != "info"]
    (plateau,) = [f for f in d if f.rule == "loss_plateau"]
    assert plateau.evidence["cause"] == "trained_start"
