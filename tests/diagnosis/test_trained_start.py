"""A loss plateau from the first step of a model that started trained (pretrained, resumed)
is told so, an info; one at the untrained level (labels the model cannot predict) stays the
warning that points at what the model is asked to learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradwatch as gw
from gradwatch.diagnosis.trained_start import TRAINED_SHARE, trained_start_clause, untrained_loss
from gradwatch.trace import Trace

transformers = pytest.importorskip("transformers")


def _trace(graph: dict[str, object] | None) -> Trace:
    trace = Trace.from_arrays(["fc"], np.arange(4), {"grad_rms": np.ones((4, 1))})
    if graph is not None:
        trace.meta["config"] = {"loss_graph": graph}
    return trace


@pytest.mark.parametrize(
    ("graph", "level"),
    [
        ({"kind": "cross_entropy", "classes": 10}, np.log(10)),
        ({"kind": "bce_with_logits", "classes": None}, np.log(2)),
        ({"kind": "cross_entropy", "classes": None}, None),  # the width could not be read
        ({"kind": None, "classes": None}, None),  # a regression loss
        ({"kind": "nll_loss", "classes": None}, None),  # nll of no log-softmax: no level
        (None, None),  # no graph read (a loss logged as a float, an older trace)
    ],
)
def test_the_untrained_level_is_known_only_from_the_loss_s_graph(
    graph: dict[str, object] | None, level: float | None
) -> None:
    seen = untrained_loss(_trace(graph))
    assert (None if seen is None else seen[0]) == pytest.approx(level)


def test_a_start_under_half_the_untrained_level_is_a_trained_start() -> None:
    trace = _trace({"kind": "cross_entropy", "classes": 10})
    below = TRAINED_SHARE * np.log(10) * 0.99
    assert trained_start_clause(trace, float(below)) is not None
    assert trained_start_clause(trace, float(TRAINED_SHARE * np.log(10))) is None
    assert trained_start_clause(trace, 2.3) is None  # an untrained start
    assert trained_start_clause(trace, -1.0) is None  # no fraction of it
    assert trained_start_clause(None, 0.1) is None


def _counting_llama_run(pretrain: int, noise: float) -> gw.Diagnosis:
    """A 2-layer HF Llama (vocabulary 64) on counting (each token the previous plus one,
    mod 64) with a share ``noise`` of the labels random: ``pretrain`` steps of AdamW 2e-2
    unwatched, then 60 watched steps of AdamW 1e-3, as a fine-tune resumed from them."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(cfg)
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
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
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
