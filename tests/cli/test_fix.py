"""`gradwatch fix RUN_DIR` prints the prescription for a recorded run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import gradwatch as gw
import gradwatch.diagnosis
from gradwatch.cli.main import main
from gradwatch.diagnosis import Finding, RemedyHint
from gradwatch.trace import Trace


def _record(run_dir: Path, meta: dict[str, object] | None = None) -> None:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(4, 16), nn.Sigmoid()]
    for _ in range(6):
        layers += [nn.Linear(16, 16), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt, run_dir=run_dir, meta=meta) as w:
        for _ in range(12):
            loss = nn.functional.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 2, (8,)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)


def _fake_diagnose(trace: Trace) -> list[Finding]:
    """Stands in for gradwatch.diagnosis.diagnose: a fixed finding with five remedy hints."""
    hints = ("residual", "lstm", "relu", "clip_norm", "init_lsuv")
    return [
        Finding(
            "vanishing_gradient", "critical", (trace.layers[0].name,), (0, 11), {}, "first layers get no gradient",
            tuple(RemedyHint(h, f"{h} helps") for h in hints),
        )
    ]  # fmt: skip


def test_fix_prints_ranked_remedies_and_rules_out_misfits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a (stand-in) diagnosis, fix lists the remedies in order with how to apply them;
    lstm is ruled out (no RNN recorded) and clip_norm carries a suggested max_norm."""
    _record(tmp_path / "run")
    monkeypatch.setattr(gradwatch.diagnosis, "diagnose", _fake_diagnose, raising=False)
    assert main(["fix", str(tmp_path / "run"), "--all"]) == 0
    out = capsys.readouterr().out
    assert "[critical] vanishing_gradient" in out
    order = [out.index(f"{r}  (score") for r in ("residual", "relu", "clip_norm", "init_lsuv")]
    assert order == sorted(order)
    assert 'gw.remedies.apply(model, "clip_norm", max_norm=' in out
    assert "needs: inputs" in out
    assert "- lstm: the recorded model has no RNN layer" in out


@pytest.mark.parametrize(
    ("remedy", "args"), [("lr_warmup", "optimizer=..."), ("lower_lr", "optimizer=..., factor=0.1")]
)
def test_fix_shows_how_to_use_a_scheduler(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    remedy: str, args: str,
) -> None:  # fmt: skip
    """lr_warmup and lower_lr return a scheduler: fix says to pass the optimizer and to step
    it (and, for lower_lr, the factor it lowers by)."""
    _record(tmp_path / "run")  # SGD at a constant rate: no warm-up ran, so one fits

    def diagnose(trace: Trace) -> list[Finding]:
        hint = RemedyHint(remedy, "keeps the steps small")
        return [Finding("unstable_updates", "critical", (), (0, 2), {}, "too large", (hint,))]

    monkeypatch.setattr(gradwatch.diagnosis, "diagnose", diagnose, raising=False)
    assert main(["fix", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert (
        f'how: scheduler = gw.remedies.apply(model, "{remedy}", {args}); then '
        "scheduler.step() after each optimizer.step()"
    ) in out
    assert "needs: optimizer" in out


_OWN_SETTINGS = {
    # the recorded run's rate is 0.1: lower_lr's tenth of it is named
    "transformers": (
        "TrainingArguments(..., warmup_steps=...)",
        "max_grad_norm=",
        "TrainingArguments(..., learning_rate=0.01)",
    ),
    "lightning": (
        '"interval": "step"',
        'gradient_clip_algorithm="norm")',
        "the optimizer configure_optimizers returns, at lr=0.01",
    ),
}


@pytest.mark.parametrize("framework", sorted(_OWN_SETTINGS))
def test_fix_names_the_trainers_own_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    framework: str,
) -> None:  # fmt: skip
    """A run recorded by the HF Trainer or Lightning (meta["trainer"]["framework"]) is told
    the trainer's own warm-up, rate and clipping settings: the trainer owns the step, so a
    scheduler or clipper made beside it would act twice or be replaced."""
    _record(tmp_path / "run", meta={"trainer": {"framework": framework}})

    def diagnose(trace: Trace) -> list[Finding]:
        hints = (
            RemedyHint("lr_warmup", "small first steps"),
            RemedyHint("lower_lr", "smaller steps"),
            RemedyHint("clip_norm", "bound"),
        )
        return [Finding("unstable_updates", "critical", (), (0, 2), {}, "too large", hints)]

    monkeypatch.setattr(gradwatch.diagnosis, "diagnose", diagnose, raising=False)
    assert main(["fix", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert all(setting in out for setting in _OWN_SETTINGS[framework])
    assert "gw.remedies.apply" not in out and "needs: optimizer" not in out


def test_fix_json_is_machine_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--format json gives findings and prescriptions as JSON."""
    _record(tmp_path / "run")
    monkeypatch.setattr(gradwatch.diagnosis, "diagnose", _fake_diagnose, raising=False)
    assert main(["fix", str(tmp_path / "run"), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [p["remedy"] for p in data["prescriptions"]] == [
        "residual",
        "relu",
        "clip_norm",
        "init_lsuv",
    ]
    assert data["findings"][0]["rule"] == "vanishing_gradient"


def test_fix_without_a_run_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing run dir exits 2 with one line naming it."""
    assert main(["fix", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err


def test_fix_with_the_real_diagnosis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On a deep sigmoid run the real diagnosis finds vanishing gradients and fix prescribes
    residual connections first (the run has Linear(16, 16) blocks) and no lstm."""
    _record(tmp_path / "run")
    assert main(["fix", str(tmp_path / "run"), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "vanishing_gradient" in [f["rule"] for f in data["findings"]]
    remedies = [p["remedy"] for p in data["prescriptions"]]
    assert remedies[0] == "residual" and "lstm" not in remedies


#: What fix says instead of a ranked list, one line per case.
_NO_REMEDY_LINES = (
    "none of the catalogue's transforms fits these findings",
    "Nothing to fix: the findings above are notes (info), not problems.",
)


@pytest.mark.parametrize(
    ("finding", "says"),
    [
        # A loss rising under steps too large: a setting to change, no transform.
        (
            Finding("loss_plateau", "warning", (), (4, 11), {}, "Loss rising: steps too large"),
            _NO_REMEDY_LINES[0],
        ),
        # Info only (a poor start training recovered from): notes, not problems.
        (
            Finding("poor_initialization", "info", (), (0, 2), {}, "recovered from"),
            _NO_REMEDY_LINES[1],
        ),
    ],
)
def test_fix_with_findings_that_carry_no_remedy(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    finding: Finding,
    says: str,
) -> None:
    """Findings without remedies are not followed by an empty ranked list: fix says why."""
    _record(tmp_path / "run")
    monkeypatch.setattr(gradwatch.diagnosis, "diagnose", lambda trace: [finding], raising=False)
    assert main(["fix", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert finding.message in out and says in out
    assert [line in out for line in _NO_REMEDY_LINES].count(True) == 1
    assert "Remedies, best first" not in out
