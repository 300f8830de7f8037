"""Eval mode left on: what the watch counts of the model's ``training`` flag, on real loops,
and how the diagnosis tells the findings of such a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.diagnosis.eval_mode import EVAL_SHARE, settle_eval_mode
from gradwatch.diagnosis.finding import Finding, RemedyHint
from gradwatch.trace import Trace


def _bn_net() -> nn.Module:
    return nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1)
    )


def _train(
    validate_at: int | None, *, resume: bool, run_dir: Path | None = None
) -> dict[str, int | None]:
    """30 SGD steps of a BatchNorm MLP under gw.watch (to ``run_dir`` if given); at step
    ``validate_at`` a validation forward in eval mode, followed by ``model.train()`` only
    when ``resume``. Returns the watch's ``train_mode`` record."""
    torch.manual_seed(0)
    model = _bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    with gw.watch(model, opt, run_dir, overhead=None) as w:
        for step in range(30):
            if step == validate_at:
                model.eval()
                with torch.no_grad():
                    model(torch.randn(4, 8))
                if resume:
                    model.train()
            opt.zero_grad()
            loss = model(torch.randn(32, 8)).pow(2).mean()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    return w.trace.meta["config"]["train_mode"]


def test_a_loop_that_forgets_model_train_after_validating_is_counted() -> None:
    seen = _train(10, resume=False)
    assert seen == {
        "steps": 30, "eval_steps": 20, "first_eval_step": 10, "batch_norms": 1, "dropouts": 1
    }  # fmt: skip
    assert _train(10, resume=True)["eval_steps"] == 0
    assert _train(None, resume=True)["eval_steps"] == 0


def _trace(eval_steps: int, batch_norms: int = 2) -> Trace:
    trace = Trace.from_arrays(["fc"], np.arange(40), {"grad_rms": np.ones((40, 1))})
    trace.meta["config"] = {
        "train_mode": {
            "steps": 40,
            "eval_steps": eval_steps,
            "first_eval_step": 40 - eval_steps if eval_steps else None,
            "batch_norms": batch_norms,
            "dropouts": 1,
        }
    }
    return trace


def _dead(severity: str = "warning") -> Finding:
    return Finding(
        "dead_units", severity, ("bn",), (10, 39), {}, "Dead units: measured.",
        (RemedyHint("leaky_relu", "a slope"),),
    )  # fmt: skip


def test_the_findings_of_a_run_mostly_in_eval_mode_name_it_and_offer_no_remedy() -> None:
    """30 of 40 steps in eval mode with 2 BatchNorm layers: the alarm says so, with the
    counts in its evidence and no remedy; an info finding is left as it is."""
    out = settle_eval_mode([_dead(), _dead("info")], _trace(30))
    assert out[0].remedies == () and out[0].evidence["eval_mode"]["eval_steps"] == 30
    assert out[0].message == (
        "Dead units: measured. The model trained in eval mode at 30 of 40 optimizer steps "
        "(from step 10): its 2 BatchNorm layer(s) normalise with running statistics they no "
        "longer update, not the batch's. Call model.train() before training (after each "
        "validation); this may be its cause."
    )
    assert out[1] == _dead("info")


@pytest.mark.parametrize(
    ("eval_steps", "batch_norms"),
    [(int(EVAL_SHARE * 40) - 1, 2), (40, 0), (0, 2)],
    ids=["under_the_share", "dropout_only", "train_mode"],
)
def test_eval_mode_is_not_named_for_a_few_steps_or_without_batchnorm(
    eval_steps: int, batch_norms: int
) -> None:
    """Under half the steps (a validation forward counted by mistake would be one), or a
    model without BatchNorm (eval mode then only turns dropout off), or none: unchanged."""
    assert settle_eval_mode([_dead()], _trace(eval_steps, batch_norms)) == [_dead()]


NOTE = (
    "The model trained in eval mode at 20 of 30 optimizer steps (from step 10): its 1 "
    "BatchNorm layer(s) normalise with running statistics they no longer update, not the "
    "batch's. Call model.train() before training (after each validation)."
)


def test_eval_mode_with_no_alarm_is_a_note_of_the_diagnosis_everywhere_it_is_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No rule at warning or above: the diagnosis does not say "no problem found" but the
    note, in its verdict, its summary, the CLI (text and JSON) and the report's verdict."""
    from gradwatch.cli.main import main
    from gradwatch.report.summary import summarize, verdict

    run_dir = tmp_path / "run"
    _train(10, resume=False, run_dir=run_dir)  # too short and mild for any rule to fire
    trace = gw.load(run_dir)
    d = gw.diagnose(trace)
    assert d == [] and d.notes == (NOTE,)
    assert d.verdict == f"No rule fired, but: {NOTE}"
    assert NOTE in d.summary() and NOTE in d._repr_html_().replace("&#x27;", "'")
    lines = verdict(summarize(trace, list(d), "run"), list(d))
    assert f"Note: {NOTE}" in lines and "No problem found" not in " ".join(lines)
    assert main(["diagnose", str(run_dir), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["notes"] == [NOTE]
    assert main(["diagnose", str(run_dir)]) == 0
    assert f"Note: {NOTE}" in " ".join(capsys.readouterr().out.split())
    assert main(["report", str(run_dir), "--out", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text().replace("&#39;", "'")
    assert '<section class="verdict info"' in html and f"Note: {NOTE}" in html


def test_no_note_in_train_mode_or_beside_an_alarm_that_already_says_it() -> None:
    """A run in train mode has no note; where a warning carries the eval-mode sentence, the
    note is not repeated."""
    from gradwatch.diagnosis.eval_mode import eval_mode_note

    assert eval_mode_note([], _trace(0)) is None
    assert eval_mode_note([_dead()], _trace(30)) is None
    assert eval_mode_note([_dead("info")], _trace(30)) is not None


def test_the_live_check_tells_the_note_once_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """gw.watch's live check (on_finding="warn") prints the eval-mode note at the first flush
    that sees it, once; a callable on_finding is handed findings only."""
    seen: list[Finding] = []
    for on_finding in ("warn", seen.append):
        torch.manual_seed(0)
        model = _bn_net()
        opt = torch.optim.SGD(model.parameters(), lr=1e-2)
        model.eval()
        with gw.watch(model, opt, overhead=None, flush_every=10, on_finding=on_finding) as w:
            for _ in range(40):
                opt.zero_grad()
                loss = model(torch.randn(32, 8)).pow(2).mean()
                loss.backward()
                opt.step()
                w.log(loss=loss)
        err = capsys.readouterr().err
        if on_finding == "warn":
            notes = [line for line in err.splitlines() if ": note: " in line]
            assert len(notes) == 1 and "The model trained in eval mode at" in notes[0]
        else:
            assert ": note: " not in err and seen == []


def test_each_note_is_told_once_though_its_counts_move(capsys: pytest.CaptureFixture[str]) -> None:
    """A BatchNorm classifier in eval mode ending in nn.Softmax under cross_entropy: the
    eval-mode note (its step counts change at every flush) and the squash note are each
    printed once over four flushes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    model.append(nn.Softmax(-1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.eval()
    with gw.watch(model, opt, overhead=None, flush_every=10, on_finding="warn") as w:
        for _ in range(40):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(
                model(torch.randn(32, 8)), torch.zeros(32).long()
            )
            loss.backward()
            opt.step()
            w.log(loss=loss)
    notes = [line for line in capsys.readouterr().err.splitlines() if ": note: " in line]
    assert len(notes) == 2, notes
    assert "step 10: note: The model trained in eval mode at 10 of 10" in notes[0]
    assert "step 10: note: The loss applies cross-entropy to outputs" in notes[1]
