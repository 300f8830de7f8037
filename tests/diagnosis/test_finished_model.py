"""A model that has learned all there is to learn is not told its layers stopped training."""

from __future__ import annotations

import pytest
import torch

import gradwatch as gw


@pytest.mark.slow
def test_a_resnet50_that_memorised_its_batch_draws_no_finding() -> None:
    """HF ResNet-50's stages (3-4-6-3 bottleneck blocks, a 16-channel stem to keep it quick)
    memorising 4 random 64 x 64 images with 1000 labels, SGD 1e-3 with momentum 0.9, under the
    default budget (the overhead benchmark's CPU workload): the loss falls from ~7.6 to ~1e-5
    and the blocks' last BatchNorm gains then move under 1e-8 a step. They were told "no longer
    training", with residual connections and BatchNorm as remedies; the model has finished."""
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    config = ResNetConfig(
        num_labels=1000,
        embedding_size=16,
        hidden_sizes=[256, 512, 1024, 2048],
        depths=[3, 4, 6, 3],
        layer_type="bottleneck",
    )
    model = ResNetForImageClassification(config)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(4, 3, 64, 64), torch.randint(0, 1000, (4,))
    live: list[gw.Finding] = []
    with gw.watch(model, opt, on_finding=live.append) as w:
        for _ in range(300):
            opt.zero_grad()
            loss = model(pixel_values=x, labels=y).loss
            loss.backward()
            opt.step()
            w.log(loss=loss)
    assert loss.item() < 1e-3  # it memorised the batch
    assert live == [] and list(gw.diagnose(w.trace)) == []
