"""Online diagnosis: findings at each flush, equal to gw.diagnose on the same steps."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import gradwatch as gw
from gradwatch.live import LiveDiagnosis, read_findings
from gradwatch.live import online as online_mod
from gradwatch.recording import Flush
from gradwatch.recording import watch as record

from ._helpers import as_json, deep_sigmoid, record_json, small_model, train


@pytest.fixture(autouse=True)
def _every_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check at every flush: these toy steps are so fast the cost budget would space them."""
    monkeypatch.setattr(online_mod, "MAX_SHARE", 0.0)


def test_raise_arrives_within_one_flush_and_the_run_dir_holds_every_step(tmp_path: Path) -> None:
    """A NaN at step 23 raises GradientProblem at step 30 (flush_every=10), run dir complete."""
    model, opt = small_model()
    run = tmp_path / "run"
    with (
        pytest.raises(gw.GradientProblem) as info,
        gw.watch(model, opt, run, flush_every=10, on_finding="raise") as w,
    ):
        train(w, model, opt, 100, nan_at=23)
    problem = info.value
    assert problem.finding.rule == "nonfinite_gradient"
    assert problem.step == 30  # the flush of steps 20-29, at the next optimizer step
    assert "nonfinite_gradient" in str(problem)
    trace = gw.load(run)
    assert trace.steps.tolist() == list(range(30))
    assert trace.meta["status"] == "failed"
    assert problem.finding.steps is not None and problem.finding.steps[0] == 23
    records = read_findings(run)
    assert [r["rule"] for r in records] == ["nonfinite_gradient"]
    assert records[0]["seen_at_step"] == 30


def test_stop_ends_a_plain_loop_early(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """on_finding="stop" sets w.should_stop at the flush after the NaN; the loop ends there."""
    model, opt = small_model()
    with gw.watch(model, opt, tmp_path / "run", flush_every=10, on_finding="stop") as w:
        taken = train(w, model, opt, 100, nan_at=12, stop=True)
    # The flush of steps 10-19 runs in step 20's optimizer step; the loop ends after it.
    assert taken == 21
    assert w.should_stop
    assert "nonfinite_gradient" in capsys.readouterr().err
    assert gw.load(tmp_path / "run").meta["status"] == "complete"


def test_live_findings_equal_diagnose_on_the_same_steps(tmp_path: Path) -> None:
    """At every flush the live findings are gw.diagnose of the run dir as loaded then."""
    model, opt = deep_sigmoid()
    run = tmp_path / "run"
    live = LiveDiagnosis(on_finding=lambda f: None, min_severity="info", max_share=0)
    seen: list[tuple[int, list[str], list[str]]] = []

    def reference(watch: gw.Watch, flush: Flush) -> None:
        # Independent of the live tables: read the run directory back from disk.
        seen.append((flush.end_step, as_json(live.findings), as_json(gw.diagnose(gw.load(run)))))

    with record(model, opt, run, flush_every=25, overhead=None) as w:  # exact steps
        w.add_flush_listener(live)
        w.add_flush_listener(reference)
        train(w, model, opt, 130, nan_at=110)
    assert [s for s, _, _ in seen] == [25, 50, 75, 100, 125, 130]
    for step, got, want in seen:
        assert got == want, f"live findings differ from gw.diagnose at step {step}"
    assert seen[-1][1] and any("nonfinite_gradient" in f for f in seen[-1][1])
    # findings.jsonl: each record is a finding gw.diagnose gave on the steps before it.
    by_step = {step: want for step, _, want in seen}
    records = read_findings(run)
    assert records, "a deep sigmoid MLP has findings"
    for r in records:
        assert record_json(r) in by_step[r["seen_at_step"]]
    # Each rule is logged once, unless its severity rose.
    rules = [r["rule"] for r in records if r["change"] == "new"]
    assert len(rules) == len(set(rules))


def test_warn_prints_each_finding_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The default prints one plain line per new finding on stderr (not a TTY), never again."""
    model, opt = deep_sigmoid()
    with gw.watch(model, opt, tmp_path / "run", flush_every=20, min_severity="info") as w:
        train(w, model, opt, 120)
    err = capsys.readouterr().err.strip().splitlines()
    records = read_findings(tmp_path / "run")
    assert len(err) == len(records) > 0
    for line, r in zip(err, records, strict=True):
        assert line.startswith(f"gradwatch: step {r['seen_at_step']}: {r['severity']}")
        assert r["rule"] in line and "\x1b[" not in line  # plain text off a terminal
    # The findings at close equal gw.diagnose afterwards: every rule it names was reported.
    final = {f.rule for f in gw.diagnose(gw.load(tmp_path / "run"))}
    assert final <= {r["rule"] for r in records}


def test_min_severity_filters_what_reaches_on_finding(tmp_path: Path) -> None:
    """A callable gets only findings at or above min_severity; the file gets all of them."""
    model, opt = deep_sigmoid()
    got: list[str] = []
    with gw.watch(
        model,
        opt,
        tmp_path / "run",
        flush_every=20,
        on_finding=lambda f: got.append(f.severity),
        min_severity="critical",
    ) as w:
        train(w, model, opt, 60, nan_at=45)
    records = read_findings(tmp_path / "run")
    assert got and set(got) == {"critical"}
    assert len(records) > len(got)  # warnings are logged, not handed on


def test_findings_file_survives_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write error stops the findings file with one warning; training goes on."""
    import errno
    import os

    real_write = os.write
    calls = {"n": 0}

    def full(fd: int, data: bytes) -> int:
        if data.startswith(b"{") and data.endswith(b"\n"):
            calls["n"] += 1
            if calls["n"] == 1:
                return real_write(fd, data[:5])  # a short write: the line is cut back
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    model, opt = deep_sigmoid()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gw.watch(model, opt, tmp_path / "run", flush_every=20, on_finding=lambda f: None) as w:
            assert train(w, model, opt, 80, nan_at=50) == 80
    ours = [w for w in caught if "live findings" in str(w.message)]
    # The short write is the disk filling up: the partial line is cut, the log stops there.
    assert len(ours) == 1 and "short write (5 of" in str(ours[0].message)
    assert calls["n"] == 1
    assert (tmp_path / "run" / "findings.jsonl").read_bytes() == b""  # no half line


def test_findings_file_lines_are_whole_json(tmp_path: Path) -> None:
    """Every line of findings.jsonl is one complete JSON object with the finding's fields."""
    model, opt = deep_sigmoid()
    with gw.watch(model, opt, tmp_path / "run", flush_every=20, on_finding=lambda f: None) as w:
        train(w, model, opt, 60)
    raw = (tmp_path / "run" / "findings.jsonl").read_text()
    assert raw.endswith("\n")
    for line in raw.splitlines():
        obj = json.loads(line)
        assert {"seen_at_step", "change", "rule", "severity", "message"} <= set(obj)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"on_finding": "explode"}, "`on_finding`.*'explode'"),
        ({"on_finding": 3}, "`on_finding`"),
        ({"min_severity": "fatal"}, "`min_severity`.*'fatal'"),
        ({"tensorboard": 3}, "`tensorboard`"),
        ({"wandb": object()}, "`wandb`"),
    ],
)
def test_bad_live_arguments_are_refused_before_anything_is_made(
    tmp_path: Path, kwargs: dict[str, object], match: str
) -> None:
    """A bad live argument is a clear error; no run directory or hook is left behind."""
    model, opt = small_model()
    with pytest.raises((ValueError, TypeError), match=match):
        gw.watch(model, opt, tmp_path / "run", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists()
    assert not opt._optimizer_step_pre_hooks  # type: ignore[attr-defined]


def test_gw_watch_is_the_live_watch_and_the_recorder_stays_quiet(tmp_path: Path) -> None:
    """gw.watch is live.watch with the recorder's arguments; recording.watch adds no listener."""
    import inspect

    from gradwatch import live, recording

    assert gw.watch is live.watch
    rec = dict(inspect.signature(recording.Watch.__init__).parameters)
    del rec["self"]
    ours = inspect.signature(live.watch).parameters
    assert list(ours)[: len(rec)] == list(rec)
    assert [p.default for p in list(ours.values())[: len(rec)]] == [p.default for p in rec.values()]
    assert list(ours)[len(rec) :] == ["on_finding", "min_severity", "tensorboard", "wandb"]
    model, opt = small_model()
    with record(model, opt) as w:
        assert not w._flush_listeners


def test_the_cost_budget_spaces_checks_but_never_delays_a_nan(tmp_path: Path) -> None:
    """With a tiny budget only the first flush, flushes holding NaN, and the last are checked."""
    model, opt = small_model()
    live = LiveDiagnosis(on_finding=lambda f: None, max_share=1e-9)
    with record(model, opt, tmp_path / "run", flush_every=10) as w:
        w.add_flush_listener(live)
        train(w, model, opt, 75, nan_at=42)
    # The NaN at 42 poisons the weights: every flush from 50 on holds non-finite gradients.
    assert [step for step, _ in live.checks] == [10, 50, 60, 70, 75]
    assert [c.finding.rule for c in live.changes] == ["nonfinite_gradient"]
    assert live.changes[0].step == 50


def test_a_failing_rule_turns_live_checks_off_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the rules warns once and leaves training and recording running."""

    def broken(trace: object) -> list[object]:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(online_mod, "diagnose", broken)
    model, opt = small_model()
    with (
        pytest.warns(RuntimeWarning, match="live diagnosis failed.*ZeroDivisionError") as rec,
        gw.watch(model, opt, tmp_path / "run", flush_every=10) as w,
    ):
        assert train(w, model, opt, 35) == 35
    assert len([r for r in rec if "live diagnosis" in str(r.message)]) == 1
    assert gw.load(tmp_path / "run").steps.tolist() == list(range(35))


def test_warn_is_styled_in_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the line is rich-styled (ANSI colours) and still one line."""
    import io

    from gradwatch.diagnosis import Finding
    from gradwatch.live import Change

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    monkeypatch.setattr("sys.stderr", out)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    f = Finding("nonfinite_gradient", "critical", ("0",), (3, 3), {}, "NaN [here].", (), ("L0 0",))
    online_mod.print_finding(Change(f, 10, "new"))
    text = out.getvalue()
    assert "\x1b[" in text and text.count("\n") == 1
    assert "NaN [here]." in text and "nonfinite_gradient" in text
