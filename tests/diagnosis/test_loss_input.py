"""A loss fed outputs of the wrong kind (a softmax before cross_entropy, a sigmoid before BCE
with logits, nll_loss of a layer's raw outputs or of probabilities), read from its graph by
the watch: every alarm is told so without remedies, a run with no alarm gets the note from
its first steps, and real models that compute their loss correctly (HF GPT-2, ViT) get
nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradwatch as gw
from gradwatch.diagnosis.finding import Finding, RemedyHint
from gradwatch.diagnosis.loss_input import loss_input_note, settle_loss_input
from gradwatch.trace import Trace

transformers = pytest.importorskip("transformers")


def _trace(mismatched: int, given: str | None = "softmax", loss: str = "cross_entropy") -> Trace:
    trace = Trace.from_arrays(["fc"], np.arange(40), {"grad_rms": np.ones((40, 1))})
    record = {
        "checked": 3, "mismatched": mismatched, "loss": loss, "given": given, "first_step": 0
    }  # fmt: skip
    trace.meta["config"] = {"loss_graph": record}
    return trace


def _finding(severity: str = "warning", **evidence: object) -> Finding:
    return Finding(
        "vanishing_gradient", severity, ("fc",), (10, 39), dict(evidence), "Vanishing: measured.",
        (RemedyHint("residual", "a path"),),
    )  # fmt: skip


def test_an_alarm_of_such_a_run_is_told_the_cause_and_offers_no_remedy() -> None:
    out = settle_loss_input([_finding(), _finding("info")], _trace(3))
    assert out[0].remedies == () and out[0].evidence["loss_input"]["given"] == "softmax"
    assert out[0].message.startswith(
        "Vanishing: measured. The loss applies cross-entropy to outputs that already went "
        "through a softmax (its autograd graph, read at step 0: a log-softmax over a softmax)."
    )
    assert out[0].message.endswith(
        "Pass it the logits (drop the final softmax); this may be its cause."
    )
    assert out[1] == _finding("info")


def test_the_plateau_at_the_floor_already_says_it_and_is_not_told_twice() -> None:
    floor = _finding(cause="probability_floor")
    assert settle_loss_input([floor], _trace(3)) == [floor]
    assert loss_input_note([floor], _trace(3)) is None


@pytest.mark.parametrize(
    ("mismatched", "given", "loss"),
    [(0, None, "cross_entropy"), (3, "tanh", "cross_entropy"), (3, "logits", "cross_entropy")],
    ids=["none_mismatched", "unknown_input", "logits_are_right_for_cross_entropy"],
)
def test_nothing_is_said_without_a_wrong_input_the_watch_saw(
    mismatched: int, given: str | None, loss: str
) -> None:
    assert settle_loss_input([_finding()], _trace(mismatched, given, loss)) == [_finding()]
    assert loss_input_note([], _trace(mismatched, given, loss)) is None
    untouched = Trace.from_arrays(["fc"], np.arange(4), {"grad_rms": np.ones((4, 1))})
    assert loss_input_note([], untouched) is None  # a trace without the record (older, hand-built)


@pytest.mark.parametrize("squash", ["sigmoid", "softmax"])
def test_the_bce_sentence_names_its_own_loss_floors_and_squash(squash: str) -> None:
    note = loss_input_note([_finding("info")], _trace(3, squash, "bce_with_logits"))
    assert note is not None and "BCEWithLogitsLoss applies the sigmoid itself" in note
    assert f"through a {squash} (its autograd graph, read at step 0: BCE-with-logits" in note
    assert "log(1 + 1/e) = 0.313" in note and note.endswith(f"(drop the final {squash}).")


@pytest.mark.parametrize(
    ("given", "words", "mend"),
    [
        ("logits", "to a layer's raw outputs (its autograd graph, read at step 0: nll_loss over "
         "a layer's output, with no log-softmax). NLLLoss expects log-probabilities",
         "Apply log_softmax before it (or pass the logits to cross_entropy)."),
        ("softmax", "to probabilities (its autograd graph, read at step 0: nll_loss over a "
         "softmax, with no log). NLLLoss expects log-probabilities",
         "(or pass the logits to cross_entropy)."),
        ("sigmoid", "cannot go below -1 and its gradient shrinks as the sigmoid saturates",
         "(or pass the logits to cross_entropy)."),
        ("log_softmax_over_dim_0", "to a log-softmax taken over dimension 0 (its autograd "
         "graph, read at step 0: nll_loss over log_softmax(dim=0)), the batch",
         "(without dim, F.log_softmax picks dimension 0 for a 3-D input)."),
    ],
)  # fmt: skip
def test_the_nll_sentences_say_what_it_was_given_and_the_mend(
    given: str, words: str, mend: str
) -> None:
    note = loss_input_note([], _trace(3, given, "nll_loss"))
    assert note is not None and note.startswith("The loss applies NLLLoss (F.nll_loss) to ")
    assert words in note and note.endswith(mend)


def _digits(tail: list[nn.Module], loss_fn: str, steps: int = 60) -> gw.Diagnosis:
    """A 64-64-10 ReLU MLP on digits under Adam 1e-2, batch 64."""
    return gw.diagnose(_digits_trace(tail, loss_fn, steps))


def _digits_trace(tail: list[nn.Module], loss_fn: str, steps: int = 60) -> Trace:
    from sklearn.datasets import load_digits

    x_np, y_np = load_digits(return_X_y=True)
    x, y = torch.tensor(x_np / 16.0, dtype=torch.float32), torch.tensor(y_np)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10), *tail)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(steps):
            i = torch.randint(0, len(x), (64,), generator=gen)
            out = model(x[i])
            if loss_fn == "bce":
                loss = F.binary_cross_entropy_with_logits(out, F.one_hot(y[i], 10).float())
            elif loss_fn == "nll":
                loss = F.nll_loss(out, y[i])
            else:
                loss = F.cross_entropy(out, y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    return w.trace


@pytest.mark.parametrize(
    ("tail", "loss_fn", "words"),
    [
        ([nn.Softmax(-1)], "ce", "CrossEntropyLoss (F.cross_entropy) applies log-softmax itself"),
        ([nn.Sigmoid()], "bce", "BCEWithLogitsLoss applies the sigmoid itself"),
    ],
    ids=["softmax_before_cross_entropy", "sigmoid_before_bce_with_logits"],
)
def test_a_real_run_names_the_squash_in_its_verdict_and_every_alarm(
    tail: list[nn.Module], loss_fn: str, words: str
) -> None:
    """60 steps: the softmax run's loss levels off at 1.68 (above the floor, 1.46) and its
    plateau after learning names the squash as its cause (it was "what this data allows",
    info); the sigmoid run's saturated output units and plateau are told it. Without the
    squash the same model's diagnosis never says it."""
    d = _digits(tail, loss_fn)
    alarms = [f for f in d if f.severity != "info"]
    assert alarms and all(words in f.message and f.remedies == () for f in alarms)
    assert words in d.verdict
    plain = _digits([], loss_fn)
    assert plain.notes == () and not [f for f in plain if words in f.message]


@pytest.mark.parametrize(
    ("tail", "was"),
    [([], "exploding_gradient"), ([nn.Softmax(-1)], "unstable_updates")],
    ids=["nll_of_logits", "nll_of_softmax"],
)
def test_a_real_run_of_nll_loss_misfed_names_it_where_it_read_as_a_rate_problem(
    tail: list[nn.Module], was: str
) -> None:
    """300 steps of nll_loss without a log-softmax: the loss falls below 0 without end (0.015
    -> -1.8e4) and the gradient grows, read as an exploding gradient (clipping, a lower
    rate); with a softmax instead, -0.10 -> -0.97 and "unstable updates ... the learning rate
    is too high". Both are told the loss's input, without remedies; with the log-softmax
    nothing is said."""
    d = _digits(tail, "nll", steps=300)
    alarms = [f for f in d if f.severity != "info"]
    assert was in {f.rule for f in alarms}
    assert all("NLLLoss expects log-probabilities" in f.message for f in alarms)
    assert all(f.remedies == () for f in alarms)
    assert not [f for f in alarms if "no loss was logged" in f.message]  # it was, below 0
    assert "NLLLoss expects log-probabilities" in d.verdict
    right = _digits([nn.LogSoftmax(-1)], "nll", steps=300)
    assert right.notes == () and not [f for f in right if "NLLLoss" in f.message]


def test_a_log_softmax_over_the_batch_is_the_note_of_a_run_that_seems_fine() -> None:
    """nn.LogSoftmax(0) before nll_loss normalises each class over the batch: the loss falls
    (4.17 -> 2.15 in 60 steps) and no rule fires; the note says it. Over the classes
    (nn.LogSoftmax(-1)) nothing is said."""
    d = _digits([nn.LogSoftmax(0)], "nll")
    assert not [f for f in d if f.severity != "info"] and len(d.notes) == 1
    assert d.verdict.startswith(
        "No rule fired, but: The loss applies NLLLoss (F.nll_loss) to a log-softmax taken over "
        "dimension 0"
    )
    assert _digits([nn.LogSoftmax(-1)], "nll").notes == ()


def test_cross_entropy_of_a_log_softmax_over_the_batch_is_the_note() -> None:
    """nn.LogSoftmax(0) before cross_entropy: its own log-softmax over the classes does not
    undo a normalisation across the examples; the note says it. Over the classes
    (nn.LogSoftmax(-1)), redundant but harmless: nothing said."""
    d = _digits([nn.LogSoftmax(0)], "ce")
    assert any("cross-entropy to a log-softmax taken over dimension 0" in n for n in d.notes)
    assert _digits([nn.LogSoftmax(-1)], "ce").notes == ()


class SoftCap(nn.Module):
    """Gemma 2's final logit soft cap: cap * tanh(logits / cap)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 30.0 * torch.tanh(x / 30.0)


def test_nll_loss_below_zero_is_named_where_its_graph_hid_the_logits() -> None:
    """nll_loss of soft-capped logits (HF Gemma 2's cap; benchmarks/fault_sweep.py found it
    missed there): the graph's check sees a multiplication, not a layer's output, and says
    nothing; the loss falls below 0, which minus a log-probability never does, and the
    diagnosis says so. Through a log-softmax after the cap it stays above 0: nothing said;
    a loss with another term may go below 0 (its multiple unknown): nothing said either."""
    trace = _digits_trace([SoftCap()], "nll")
    d = gw.diagnose(trace)
    words = "to something other than log-probabilities: it fell below 0"
    assert any(words in text for text in _said(d)) and "NLLLoss" in d.verdict
    assert not [t for t in _said(_digits([SoftCap(), nn.LogSoftmax(-1)], "nll")) if "NLL" in t]
    trace.meta["config"]["loss_graph"]["multiple"] = None
    assert not [t for t in _said(gw.diagnose(trace)) if words in t]


def _said(d: gw.Diagnosis) -> list[str]:
    return [*d.notes, *(f.message for f in d)]


def test_a_run_with_no_symptom_yet_has_the_squash_as_its_note() -> None:
    """30 steps: the loss still falls, no rule fires, and the verdict is the note."""
    d = _digits([nn.Softmax(-1)], "ce", steps=30)
    assert not [f for f in d if f.severity != "info"] and len(d.notes) == 1
    assert d.verdict.startswith("No rule fired, but: The loss applies cross-entropy to outputs")


def _gpt2_loss(model: nn.Module) -> torch.Tensor:
    ids = torch.randint(0, 64, (2, 16))
    return model(input_ids=ids, labels=ids).loss


def _vit_loss(model: nn.Module, softmax: bool) -> torch.Tensor:
    logits = model(pixel_values=torch.randn(2, 3, 16, 16)).logits
    return F.cross_entropy(logits.softmax(-1) if softmax else logits, torch.tensor([0, 3]))


def _hf_record(model: nn.Module, loss_of: object) -> dict[str, object]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(4):
            loss = loss_of(model)  # type: ignore[operator]
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    record: dict[str, object] = w.trace.meta["config"]["loss_graph"]
    return record


def test_real_models_that_compute_their_loss_correctly_are_read_and_not_named() -> None:
    """HF GPT-2's own LM loss (logits cast to float, shifted, viewed) and an HF ViT's logits
    under cross_entropy: read, not mismatched; the ViT's logits through a softmax first: named."""
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32)
    )
    assert _hf_record(gpt2, _gpt2_loss) == {
        "checked": 3, "mismatched": 0, "loss": None, "given": None, "first_step": None,
        "kind": "cross_entropy", "classes": 64, "multiple": 1.0,
    }  # fmt: skip
    config = transformers.ViTConfig(
        image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_labels=10,
    )  # fmt: skip
    for softmax in (False, True):
        vit = transformers.ViTForImageClassification(config)
        record = _hf_record(vit, lambda m, s=softmax: _vit_loss(m, s))
        assert record["mismatched"] == (3 if softmax else 0)
