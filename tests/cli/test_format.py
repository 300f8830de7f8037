"""Every sub-command spells its output option the same way: ``--format human|json``."""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.cli.main import build_parser, main

TINY = """
name = "tiny"
steps = 5
batch_size = 16
[model]
kind = "mlp"
depth = 2
width = 4
[task]
name = "spirals"
n_train = 64
n_test = 32
"""


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable sub-command as (its words, its parser), found by walking the parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, child in subs[0].choices.items():
        yield from _leaves(child, (*path, name))


COMMANDS = dict(_leaves(build_parser()))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recorded 8-layer sigmoid run (``run``) and a tiny lab config (``tiny.toml``)."""
    root = tmp_path_factory.mktemp("format")
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(8):
        layers += [nn.Linear(8, 8), nn.Sigmoid()]
    model = nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt, run_dir=root / "run", sample_every=1) as w:
        for _ in range(6):
            loss = nn.functional.mse_loss(model(torch.randn(16, 8)), torch.randn(16, 8))
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    (root / "tiny.toml").write_text(TINY)
    (root / "sweep.toml").write_text(TINY + "\n[sweep]\nseed = [0, 1]\n")
    return root


# One invocation per sub-command (without --format); `out` is a fresh directory per call.
ARGV: dict[tuple[str, ...], Callable[[Path, Path], list[str]]] = {
    ("demo",): lambda w, out: ["--out", str(out), "--steps", "5", "--depth", "3", "--no-report"],
    ("diagnose",): lambda w, out: [str(w / "run")],
    ("explain",): lambda w, out: [str(w / "run")],
    ("fix",): lambda w, out: [str(w / "run")],
    ("theory",): lambda w, out: ["--activation", "tanh", "--sigma-w", "1.2"],
    ("report",): lambda w, out: [str(w / "run"), "--out", f"{out}.html"],
    ("export", "tensorboard"): lambda w, out: [str(w / "run"), str(out), "--no-histograms"],
    ("watch",): lambda w, out: [str(w / "run"), "--once"],
    ("lab", "run"): lambda w, out: [str(w / "tiny.toml"), "--out", str(out)],
    ("lab", "sweep"): lambda w, out: [str(w / "sweep.toml"), "--out", str(out)],
    ("lab", "study"): lambda w, out: ["--list"],
    ("lab", "configs"): lambda w, out: [],
}


def test_every_command_offers_human_and_json() -> None:
    """Each runnable sub-command has --format with exactly human and json, human by default,
    and this module runs each of them."""
    assert set(COMMANDS) == set(ARGV)
    for words, parser in COMMANDS.items():
        (fmt,) = [a for a in parser._actions if "--format" in a.option_strings]
        assert (tuple(fmt.choices), fmt.default) == (("human", "json"), "human"), words


@pytest.mark.parametrize("words", list(ARGV), ids=" ".join)
def test_human_and_json_output(
    words: tuple[str, ...], work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--format human prints text that is not JSON; --format json prints one JSON document."""
    if words == ("export", "tensorboard"):
        pytest.importorskip("tensorboard")
    argv = ARGV[words]
    assert main([*words, *argv(work, tmp_path / "h"), "--format", "human"]) == 0
    human = capsys.readouterr().out
    assert human.strip()
    with pytest.raises(json.JSONDecodeError):
        json.loads(human)
    assert main([*words, *argv(work, tmp_path / "j"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) is not None


def test_lab_run_format_text_is_human(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old `lab run --format text` still works and prints what --format human prints."""
    cfg = str(work / "tiny.toml")
    assert main(["lab", "run", cfg, "--out", str(tmp_path / "t"), "--format", "text"]) == 0
    text = capsys.readouterr().out
    assert main(["lab", "run", cfg, "--out", str(tmp_path / "h"), "--format", "human"]) == 0
    human = capsys.readouterr().out

    def stable(out: str) -> list[str]:  # the run dir and the time differ between the runs
        return [ln for ln in out.splitlines() if not ln.startswith(("run ", "time "))]

    assert "test accuracy" in text and stable(text) == stable(human)


@pytest.mark.parametrize("words", [("lab", "run"), ("lab", "study"), ("fix",), ("report",)])
def test_text_alias_is_hidden_but_documented(words: tuple[str, ...]) -> None:
    """Commands that offered `text` accept it as human; help lists only human and json and
    says in its epilog that text is the deprecated old spelling."""
    args = COMMANDS[words].parse_args(["x", "--format", "text"])
    assert args.format == "human"
    help_text = COMMANDS[words].format_help()
    assert "{human,json}" in help_text and "--format text" in help_text
    assert "deprecated" in help_text


def test_other_commands_reject_text(capsys: pytest.CaptureFixture[str]) -> None:
    """Commands that never offered `text` reject it, and the error lists the real choices."""
    with pytest.raises(SystemExit):
        main(["diagnose", "x", "--format", "text"])
    err = capsys.readouterr().err
    assert "invalid choice: 'text'" in err and "'human', 'json'" in err


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_for_a_person(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a terminal `lab run` draws report.console's bar (description and step count); with
    --format json on the same terminal it prints only the JSON, and in a pipe no bar at all."""
    cfg = str(work / "tiny.toml")
    assert main(["lab", "run", cfg, "--out", str(tmp_path / "p")]) == 0
    assert "5/5" not in capsys.readouterr().out
    tty = _Tty()
    monkeypatch.setattr(sys, "stdout", tty)
    assert main(["lab", "run", cfg, "--out", str(tmp_path / "t")]) == 0
    assert "tiny" in tty.getvalue() and "5/5" in tty.getvalue()
    tty.seek(0)
    tty.truncate()
    assert main(["lab", "run", cfg, "--out", str(tmp_path / "j"), "--format", "json"]) == 0
    assert json.loads(tty.getvalue())["steps"] == 5


def test_diagnose_on_a_terminal_prints_the_findings_table(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a terminal diagnose shows report.console's findings table; in a pipe, plain blocks."""
    tty = _Tty()
    monkeypatch.setattr(sys, "stdout", tty)
    assert main(["diagnose", str(work / "run")]) == 0
    assert "try first" in tty.getvalue() and "vanishing_gradient" in tty.getvalue()


def test_sweep_json_is_the_results_table(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lab sweep --format json` lists the rows the sweep wrote to results.parquet, NaN as null."""
    pd = pytest.importorskip("pandas")
    out = tmp_path / "s"
    assert (
        main(["lab", "sweep", str(work / "sweep.toml"), "--out", str(out), "--format", "json"]) == 0
    )
    body = json.loads(capsys.readouterr().out)
    table = pd.read_parquet(out / "results.parquet")
    assert body["tables"] == [str(out / "results.parquet"), str(out / "results.csv")]
    assert [r["run"] for r in body["runs"]] == table["run"].tolist() == ["seed=0", "seed=1"]
    for row, (_, ref) in zip(body["runs"], table.iterrows(), strict=True):
        for key, want in ref.items():
            assert row[key] == (None if pd.isna(want) else want), key
