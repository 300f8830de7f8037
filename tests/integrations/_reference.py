"""An independent reference for per-layer gradient norms and activation means, the check
that no gradwatch hook outlives a run, and the tiny Hugging Face models several tests train."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn


def layer_norms(model: nn.Module) -> dict[str, float]:
    """||grad|| of each module's own parameters, in float64: a plain per-parameter loop."""
    out: dict[str, float] = {}
    for name, mod in model.named_modules():
        grads = [p.grad for p in mod.parameters(recurse=False) if p.grad is not None]
        if grads:
            out[name] = float(sum(g.double().pow(2).sum() for g in grads) ** 0.5)
    return out


class ActivationReference:
    """Means of the outputs of ``modules`` in training forwards, per optimizer step.

    ``step`` is advanced by the test when the step's gradients are final, so the forwards of
    an accumulated step (and none of a validation pass, run without grad) are pooled.
    """

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.step = 0
        self.outputs: dict[tuple[int, str], list[torch.Tensor]] = {}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in modules.items()]

    def _hook(self, name: str):  # type: ignore[no-untyped-def]
        def hook(mod: nn.Module, args: object, out: torch.Tensor) -> None:
            if torch.is_grad_enabled() and mod.training:
                self.outputs.setdefault((self.step, name), []).append(out.detach().double())

        return hook

    def mean(self, step: int, name: str) -> float:
        return float(torch.cat(self.outputs[(step, name)]).mean())

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def assert_norms_match(trace, reference: list[dict[str, float]]) -> None:  # type: ignore[no-untyped-def]
    """Recorded grad_norm equals the reference at every step, layer by layer."""
    g = trace.matrix("grad_norm")
    assert g.shape[0] == len(reference), (g.shape, len(reference))
    for k, norms in enumerate(reference):
        for name, value in norms.items():
            col = trace.layer_names.index(name)
            np.testing.assert_allclose(g[k, col], value, rtol=1e-5, err_msg=f"step {k} {name}")


def assert_sampled_act_means_match(  # type: ignore[no-untyped-def]
    trace, acts: ActivationReference, steps: int, sampled: tuple[int, ...]
) -> None:
    """act_mean of the two hidden layers of the test MLP (``net.0``/``net.2``, their
    activations ``net.1``/``net.3``) equals the reference on the sampled steps and is
    missing on the others."""
    act = trace.matrix("act_mean")
    for k in range(steps):
        for name, layer in (("net.1", "net.0"), ("net.3", "net.2")):
            col = trace.layer_names.index(layer)
            if k in sampled:
                assert act[k, col] == pytest.approx(acts.mean(k, name), rel=1e-5, abs=1e-7)
            else:
                assert np.isnan(act[k, col])


def gradwatch_hooks(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Hooks attached to the model's modules and parameters, and to the optimizer's step."""
    n = len(optimizer._optimizer_step_pre_hooks) + len(optimizer._optimizer_step_post_hooks)
    for mod in model.modules():
        n += len(mod._forward_hooks) + len(mod._forward_pre_hooks)
        n += len(mod._backward_hooks) + len(mod._backward_pre_hooks)
    for p in model.parameters():
        n += len(getattr(p, "_post_accumulate_grad_hooks", None) or {})
    return n


def tiny_bert() -> nn.Module:
    """A width-16, 2-layer BERT classifier (2 labels, 64-token vocabulary) from its config.

    Its attention starts near-uniform (BERT's init std 0.02 at head dimension 8), so its
    query and key weights get gradients of RMS ~7e-8: under the 1e-7 floor.
    """
    import transformers

    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


def tiny_llama() -> nn.Module:
    """A width-32, 2-layer Llama LM (64-token vocabulary, grouped-query attention) from its
    config, at a fixed seed."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    model: nn.Module = transformers.LlamaForCausalLM(cfg)
    return model
