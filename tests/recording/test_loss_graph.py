"""The loss's autograd graph: outputs of the wrong kind on their way into the loss (a softmax
before cross_entropy, a sigmoid before BCE with logits, nll_loss of a layer's raw outputs or
of probabilities) are found, every correct way of writing a classification loss is not, and
the watch reads the first few graphs it is handed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradwatch as gw
from gradwatch.recording.loss_graph import (
    CHECKS,
    LossGraphProbe,
    mean_multiple,
    product,
    read_graph,
    wrong_input,
)

B, C, T = 6, 5, 3
Y = torch.tensor([0, 1, 2, 3, 4, 0])


def _logits(*shape: int) -> torch.Tensor:
    return torch.randn(*shape if shape else (B, C), requires_grad=True)


def _bf16_softmax_head() -> torch.Tensor:
    """A Linear head and a softmax under CPU bf16 autocast (softmax runs in float32 there:
    a cast sits between it and the loss)."""
    head = nn.Linear(C, C)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return F.cross_entropy(torch.softmax(head(_logits()), -1), Y)


SQUASHED: dict[str, Callable[[], torch.Tensor]] = {
    "nn_softmax_module": lambda: F.cross_entropy(nn.Softmax(-1)(_logits()), Y),
    "softmax_in_float64": lambda: F.cross_entropy(torch.softmax(_logits(), 1, torch.float64), Y),
    "label_smoothing": lambda: F.cross_entropy(
        torch.softmax(_logits(), -1), Y, label_smoothing=0.1
    ),
    "lm_logits_viewed": lambda: F.cross_entropy(torch.softmax(_logits(2, T, C), -1).view(-1, C), Y),
    "sequence_transposed": lambda: F.cross_entropy(
        torch.softmax(_logits(2, T, C), -1).transpose(1, 2), Y.view(2, T)
    ),
    "masked_tokens": lambda: F.cross_entropy(torch.softmax(_logits(2, T, C), -1)[:, 1], Y[:2]),
    "sum_of_two_losses": lambda: (
        F.cross_entropy(torch.softmax(_logits(), -1), Y) + 0.1 * _logits().pow(2).mean()
    ),
    "bf16_autocast": _bf16_softmax_head,
    "sigmoid_before_bce_with_logits": lambda: F.binary_cross_entropy_with_logits(
        torch.sigmoid(_logits()), torch.rand(B, C)
    ),
    "sigmoid_before_cross_entropy": lambda: F.cross_entropy(torch.sigmoid(_logits()), Y),
    "softmax_before_bce_with_logits": lambda: F.binary_cross_entropy_with_logits(
        torch.softmax(_logits(), -1), torch.rand(B, C)
    ),
}


def _lm_log_softmax_without_dim() -> torch.Tensor:
    """(B, T, C) logits under F.log_softmax without ``dim``, which picks 0 for a 3-D input
    (with a deprecation warning), then viewed (B * T, C) for nll_loss."""
    logits = nn.Linear(C, C)(_logits(2, T, C))
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        log_p = F.log_softmax(logits)
    return F.nll_loss(log_p.view(-1, C), Y)


def _nll_of_sequence_logits() -> torch.Tensor:
    """An LM-shaped head, (B, T, C) logits transposed to (B, C, T) for nll_loss (its 2-D
    node), with no log-softmax."""
    logits = nn.Linear(C, C)(_logits(2, T, C)).transpose(1, 2)
    return F.nll_loss(logits, Y.view(2, T))


def _nll_of_conv_logits() -> torch.Tensor:
    """A segmentation head: a 1x1 convolution's per-pixel logits under nll_loss."""
    maps = nn.Conv2d(C, C, 1)(_logits(2, C, 3, 3))
    return F.nll_loss(maps, torch.randint(0, C, (2, 3, 3)))


#: nll_loss given something other than log-probabilities: (case, what it was given).
NLL_MISFED: dict[str, tuple[Callable[[], torch.Tensor], str]] = {
    "linear_logits": (lambda: F.nll_loss(nn.Linear(C, C)(_logits()), Y), "logits"),
    "nn_nllloss_module_with_weights": (
        lambda: nn.NLLLoss(weight=torch.rand(C))(nn.Linear(C, C)(_logits()), Y),
        "logits",
    ),
    "sequence_logits_transposed": (_nll_of_sequence_logits, "logits"),
    "conv_logits_per_pixel": (_nll_of_conv_logits, "logits"),
    "embedding_bigram": (lambda: F.nll_loss(nn.Embedding(C, C)(Y), Y), "logits"),
    "softmax_probabilities": (lambda: F.nll_loss(torch.softmax(_logits(), -1), Y), "softmax"),
    "nn_softmax_module": (lambda: nn.NLLLoss()(nn.Softmax(-1)(_logits()), Y), "softmax"),
    "sigmoid_probabilities": (lambda: F.nll_loss(torch.sigmoid(_logits()), Y), "sigmoid"),
    "log_softmax_over_the_batch": (
        lambda: F.nll_loss(F.log_softmax(nn.Linear(C, C)(_logits()), 0), Y),
        "log_softmax_over_dim_0",
    ),
    "lm_log_softmax_without_dim": (_lm_log_softmax_without_dim, "log_softmax_over_dim_0"),
    "log_softmax_over_dim_minus_2": (
        lambda: F.nll_loss(F.log_softmax(nn.Linear(C, C)(_logits()), -2), Y),
        "log_softmax_over_dim_0",
    ),
}


def _hand_written_log_softmax() -> torch.Tensor:
    """A Linear's logits minus their logsumexp: log-probabilities, as a subtraction node."""
    logits = nn.Linear(C, C)(_logits())
    return logits - logits.logsumexp(-1, keepdim=True)


def _distillation() -> torch.Tensor:
    """KL between a student's log-softmax and a teacher's softmax, both trained."""
    student, teacher = _logits(), _logits()
    return F.kl_div(F.log_softmax(student, -1), F.softmax(teacher, -1), reduction="batchmean")


def _attention_pooled() -> torch.Tensor:
    """Softmax attention weights pool the features, then a Linear head makes the logits."""
    feats = _logits(B, T, C)
    weights = torch.softmax(feats.sum(-1), -1)  # (B, T)
    pooled = (weights.unsqueeze(-1) * feats).sum(1)  # (B, C)
    return F.cross_entropy(nn.Linear(C, C)(pooled), Y)


CORRECT: dict[str, Callable[[], torch.Tensor]] = {
    "logits": lambda: F.cross_entropy(_logits(), Y),
    "log_softmax_then_nll": lambda: F.nll_loss(F.log_softmax(_logits(), -1), Y),
    "log_of_softmax_then_nll": lambda: F.nll_loss(torch.log(torch.softmax(_logits(), -1)), Y),
    "log_softmax_before_cross_entropy": lambda: F.cross_entropy(F.log_softmax(_logits(), -1), Y),
    "sigmoid_then_bce": lambda: F.binary_cross_entropy(torch.sigmoid(_logits()), torch.rand(B, C)),
    "bce_with_logits": lambda: F.binary_cross_entropy_with_logits(_logits(), torch.rand(B, C)),
    "softmax_then_mse": lambda: F.mse_loss(torch.softmax(_logits(), -1), torch.rand(B, C)),
    "distillation": _distillation,
    "log_softmax_of_a_linear_then_nll": lambda: F.nll_loss(
        F.log_softmax(nn.Linear(C, C)(_logits()), -1), Y
    ),
    "hand_written_log_softmax_then_nll": lambda: F.nll_loss(_hand_written_log_softmax(), Y),
    "log_of_clamped_probabilities_then_nll": lambda: F.nll_loss(
        torch.log(torch.softmax(_logits(), -1).clamp_min(1e-8)), Y
    ),
    "lm_log_softmax_over_the_vocabulary": lambda: F.nll_loss(
        F.log_softmax(_logits(2, T, C), -1).view(-1, C), Y
    ),
    "classes_first_log_softmax_transposed": lambda: F.nll_loss(
        F.log_softmax(nn.Linear(B, B)(_logits(C, B)), 0).t(), Y
    ),
    "one_unbatched_example": lambda: F.nll_loss(F.log_softmax(_logits(C), 0), Y[0]),
    "conv_logits_under_cross_entropy": lambda: F.cross_entropy(
        nn.Conv2d(C, C, 1)(_logits(2, C, 3, 3)), torch.randint(0, C, (2, 3, 3))
    ),
    "attention_pooled_head": _attention_pooled,
}


@pytest.mark.parametrize("case", sorted(SQUASHED))
def test_outputs_squashed_before_a_loss_that_squashes_are_found(case: str) -> None:
    loss = "bce_with_logits" if "bce_with_logits" in case else "cross_entropy"
    squash = "sigmoid" if case.startswith("sigmoid") else "softmax"
    assert wrong_input(SQUASHED[case]()) == (loss, squash)


@pytest.mark.parametrize("case", sorted(NLL_MISFED))
def test_nll_loss_given_logits_or_probabilities_is_found(case: str) -> None:
    make, given = NLL_MISFED[case]
    assert wrong_input(make()) == ("nll_loss", given)


def _ce_of_lm_log_softmax_without_dim() -> torch.Tensor:
    """cross_entropy of (B, T, V) logits through F.log_softmax without ``dim`` (0 for a
    3-D input): each vocabulary entry normalised across the batch, then over the vocabulary."""
    with pytest.warns(UserWarning, match="Implicit dimension"):
        logp = F.log_softmax(nn.Linear(C, C)(_logits(2, T, C)))
    return F.cross_entropy(logp.reshape(-1, C), Y)


@pytest.mark.parametrize(
    "make",
    [
        lambda: F.cross_entropy(F.log_softmax(nn.Linear(C, C)(_logits()), 0), Y),
        _ce_of_lm_log_softmax_without_dim,
    ],
    ids=["log_softmax_over_the_batch", "lm_log_softmax_without_dim"],
)
def test_cross_entropy_of_a_log_softmax_over_the_batch_is_found(
    make: Callable[[], torch.Tensor],
) -> None:
    """cross_entropy's own log-softmax over the classes is idempotent on a log-softmax over
    the classes (CORRECT's log_softmax_before_cross_entropy), not on one over dim 0."""
    assert wrong_input(make()) == ("cross_entropy", "log_softmax_over_dim_0")


@pytest.mark.parametrize("case", sorted(CORRECT))
def test_correct_classification_losses_are_not(case: str) -> None:
    assert wrong_input(CORRECT[case]()) is None


@pytest.mark.parametrize(
    ("case", "kind"),
    [
        ("logits", ("cross_entropy", C)),
        ("log_softmax_then_nll", ("cross_entropy", C)),
        ("bce_with_logits", ("bce_with_logits", None)),
        ("softmax_then_mse", None),
        ("sum_of_two_losses", ("cross_entropy", C)),
        ("conv_logits_under_cross_entropy", ("cross_entropy", C)),
    ],
)
def test_the_graph_says_which_classification_loss_it_computes(
    case: str, kind: tuple[str, int | None] | None
) -> None:
    """The first loss node from the loss, and for cross-entropy the width its log-softmax
    normalises over (the classes, also of per-pixel logits): nll_loss over a log-softmax is
    cross-entropy (what F.cross_entropy builds); a regression loss is none."""
    make = CORRECT.get(case) or SQUASHED[case]
    assert read_graph(make())[0] == kind
    assert read_graph(NLL_MISFED["linear_logits"][0]())[0] == ("nll_loss", None)
    lm = F.cross_entropy(_logits(2, T, 7).view(-1, 7), Y)  # an LM's viewed (B * T, V) logits
    assert read_graph(lm)[0] == ("cross_entropy", 7)


def test_a_graph_is_still_read_after_backward_and_a_detached_loss_has_none() -> None:
    """``w.log(loss=loss)`` comes after ``backward()``, which frees the saved tensors but not
    the nodes; a detached loss or a float has no graph to read."""
    loss = SQUASHED["nn_softmax_module"]()
    loss.backward()
    assert wrong_input(loss) == ("cross_entropy", "softmax")
    assert wrong_input(loss.detach()) is None


def test_the_probe_reads_the_first_few_graphs_only_and_skips_what_has_none() -> None:
    probe = LossGraphProbe()
    probe.observe([1.5, SQUASHED["nn_softmax_module"]().detach()], step=0)
    assert probe.meta() == {
        "checked": 0, "mismatched": 0, "loss": None, "given": None, "first_step": None,
        "kind": None, "classes": None, "multiple": None,
    }  # fmt: skip
    probe.observe([CORRECT["logits"](), 2.0], step=1)
    for step in range(2, 2 + CHECKS + 2):
        probe.observe(SQUASHED["nn_softmax_module"](), step=step)
    assert probe.meta() == {
        "checked": CHECKS, "mismatched": CHECKS - 1, "loss": "cross_entropy", "given": "softmax",
        "first_step": 2, "kind": "cross_entropy", "classes": C, "multiple": 1.0,
    }  # fmt: skip


def test_the_probe_says_how_many_times_its_mean_the_loss_is() -> None:
    """The loss's value starts near log C as its mean: a sum over the batch starts a batch's
    worth higher, a static loss scale its scale higher (diagnosis/trained_start.py reads the
    start in those units); an added term makes the multiple unknown."""
    x, y = torch.randn(6, C, requires_grad=True), torch.randint(0, C, (6,))
    for loss, multiple in [
        (F.cross_entropy(x, y), 1.0),
        (F.cross_entropy(x.float(), y).view(1), 1.0),
        (F.cross_entropy(x, y, reduction="sum"), 6.0),
        (F.cross_entropy(x, y) / 1, 1.0),
        (F.cross_entropy(x, y) / 4, 0.25),  # a manual accumulation over 4 micro-batches
        (F.cross_entropy(x, y) * 2**16, 65536.0),
        (F.cross_entropy(x, y) + 0.01 * x.square().mean(), None),
        (-F.cross_entropy(x, y), None),
        (F.cross_entropy(x, y, label_smoothing=0.1), None),  # a sum of two terms
        # The HF Trainer's causal LM loss: a sum over the tokens / num_items_in_batch.
        (F.cross_entropy(x, y, reduction="sum") / torch.tensor(6), 1.0),
        (F.binary_cross_entropy_with_logits(x, torch.rand(6, C), reduction="sum") / 30, 1.0),
    ]:
        probe = LossGraphProbe()
        probe.observe(loss, step=0)
        assert probe.meta()["multiple"] == multiple


def test_a_loss_logged_apart_from_the_one_observed_has_no_multiple() -> None:
    """``scale=None``: the framework logs another tensor than the loss backward ran from
    (Lightning's manual optimisation), so how many times its mean that one is says nothing
    of the logged loss; the graph's kind is still read."""
    x, y = torch.randn(6, C, requires_grad=True), torch.randint(0, C, (6,))
    probe = LossGraphProbe()
    probe.observe(F.cross_entropy(x, y) / 4, step=0, scale=None)
    assert (probe.meta()["kind"], probe.meta()["multiple"]) == ("cross_entropy", None)


def test_a_log_softmax_that_feeds_no_nll_loss_is_no_cross_entropy() -> None:
    """A KL divergence or a CTC loss over a log-softmax starts nowhere near log C: their
    loss kind is unknown, so neither start is read against it."""
    logp = F.log_softmax(torch.randn(6, C, requires_grad=True), -1)
    kl = F.kl_div(logp, torch.softmax(torch.randn(6, C), -1), reduction="batchmean")
    ctc = F.ctc_loss(logp.view(6, 1, C), torch.tensor([[1, 2]]), [6], [2])
    for loss in (kl, ctc):
        assert read_graph(loss) == (None, None)


def test_a_sum_is_the_mean_only_over_the_targets_it_counts() -> None:
    """A sum over tokens counts the targets it does not ignore (nll_loss's total weight):
    divided by that count it is the mean; divided by the number of sequences (a loss per
    sequence) it is T times the mean; the shares of an accumulated batch are the mean once
    scaled by the number of micro-batches (``scale``), as a framework logs them."""
    x = torch.randn(2 * T, C, requires_grad=True)
    y = torch.tensor([0, 1, -100, 3, -100, 0])  # 4 of 6 targets counted
    summed = F.cross_entropy(x, y, reduction="sum")
    assert product(mean_multiple(summed / torch.tensor(4))) == 1.0
    assert product(mean_multiple(summed / 2)) == 2.0  # per sequence: 4 targets over 2
    assert product(mean_multiple(summed / torch.tensor(8)), scale=2) == 1.0
    assert product(mean_multiple(F.cross_entropy(x, y) / 4), scale=4) == 1.0  # Lightning
    assert mean_multiple(F.cross_entropy(x, y, reduction="none").sum()) is None
    nothing = F.cross_entropy(x, torch.full((6,), -100), reduction="sum")
    assert product(mean_multiple(nothing)) is None  # no target counted: no multiple


def test_a_loss_logged_after_backward_is_read_without_its_freed_numbers() -> None:
    """backward frees the numbers a multiplication or a sum saved: a loss logged after it
    (the usual place for ``w.log``) still has its graph's shape, its multiple is unknown
    (the hot start stays silent) and nothing raises; a plain mean needs none of them. (Logging ``loss * 2`` after backward raised RuntimeError from w.log before.)"""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for factor, multiple in [(2.0, None), (None, 1.0)]:
        with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
            for _ in range(4):
                loss = F.cross_entropy(model(torch.randn(6, 8)), torch.randint(0, 4, (6,)))
                loss = loss if factor is None else loss * factor
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.log(loss=loss)
        graph = w.trace.meta["config"]["loss_graph"]
        assert (graph["checked"], graph["multiple"]) == (CHECKS, multiple)


def _watched_classifier(tail: list[nn.Module], as_float: bool) -> dict[str, object]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4), *tail)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(6):
            loss = F.cross_entropy(model(torch.randn(6, 8)), torch.randint(0, 4, (6,)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss.item() if as_float else loss)
    record: dict[str, object] = w.trace.meta["config"]["loss_graph"]
    return record


def test_the_watch_reads_the_graphs_of_the_losses_it_is_logged() -> None:
    """A model ending in nn.Softmax under cross_entropy is recorded from step 0; the same
    model without it, or its loss logged as a float, is not."""
    assert _watched_classifier([nn.Softmax(-1)], as_float=False) == {
        "checked": CHECKS, "mismatched": CHECKS, "loss": "cross_entropy", "given": "softmax",
        "first_step": 0, "kind": "cross_entropy", "classes": 4, "multiple": 1.0,
    }  # fmt: skip
    assert _watched_classifier([], as_float=False)["mismatched"] == 0
    assert _watched_classifier([nn.Softmax(-1)], as_float=True)["checked"] == 0


def test_a_compiled_model_is_read_at_its_sampled_steps_which_run_eagerly() -> None:
    """Under torch.compile the watch runs its sampled steps eagerly (step 0 among them),
    where the softmax is a node of the graph; at the compiled steps between, it is inside
    the compiled function: not seen, never misread."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4), nn.Softmax(-1))
    compiled = torch.compile(model, backend="aot_eager")  # autograd as inductor builds it
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    options = {"overhead": None, "dense_steps": 0, "sample_every": 1000}
    with gw.watch(compiled, opt, on_finding=lambda f: None, **options) as w:
        for _ in range(4):
            loss = F.cross_entropy(compiled(torch.randn(6, 8)), torch.randint(0, 4, (6,)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    record = w.trace.meta["config"]["loss_graph"]
    assert record["checked"] == CHECKS and record["mismatched"] == 1
    assert record["first_step"] == 0


def test_the_kind_and_multiple_are_those_of_the_value_logged_as_loss() -> None:
    """An auxiliary loss logged first (a binary head's BCE beside the main 4-class loss)
    is checked for outputs of the wrong kind, but the untrained level the loss rules read
    the logged ``loss`` against is the main loss's: cross-entropy over 4 classes, not BCE's
    log 2 (against which the main loss's start would have read as too large)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 5))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt, overhead=None, on_finding=lambda f: None) as w:
        for _ in range(4):
            out = model(torch.randn(6, 8))
            aux = F.binary_cross_entropy_with_logits(out[:, 4], torch.rand(6))
            main = F.cross_entropy(out[:, :4], torch.randint(0, 4, (6,))) * 2
            opt.zero_grad()
            (main + aux).backward(retain_graph=True)
            opt.step()
            w.log(aux=aux, loss=main)
    graph = w.trace.meta["config"]["loss_graph"]
    assert (graph["kind"], graph["classes"], graph["multiple"]) == ("cross_entropy", 4, 2.0)
    assert graph["checked"] == CHECKS
