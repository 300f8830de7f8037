"""``gradwatch theory`` and ``gradwatch explain``: thin shells over gradwatch.theory."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch

import gradwatch as gw
from gradwatch.cli import explain as explain_cli
from gradwatch.cli import theory as theory_cli
from gradwatch.theory import critical_sigma_w, explain, mean_field


def _run(argv: list[str]) -> int:
    """Parse and run with only these two sub-commands registered."""
    parser = argparse.ArgumentParser(prog="gradwatch")
    sub = parser.add_subparsers(dest="command")
    theory_cli.register(sub)
    explain_cli.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_theory_json_matches_the_library(capsys: pytest.CaptureFixture[str]) -> None:
    """--format json prints mean_field's numbers, the depth ratio and the critical sigma_w."""
    rc = _run(["theory", "--activation", "tanh", "--sigma-w", "1.5", "--sigma-b", "0.05",
               "--depth", "50", "--format", "json"])  # fmt: skip
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    ref = mean_field("tanh", 1.5, 0.05)
    assert out["chi_1"] == pytest.approx(ref.chi_1, rel=1e-12)
    assert out["q_star"] == pytest.approx(ref.q_star, rel=1e-12)
    assert out["gradient_ratio"] == pytest.approx(ref.chi_1**50, rel=1e-12)
    assert out["critical_sigma_w"] == pytest.approx(critical_sigma_w("tanh", 0.05), rel=1e-9)
    assert out["phase"] == "chaotic"


def test_theory_human_output_states_the_convention(capsys: pytest.CaptureFixture[str]) -> None:
    """The human output names sigma_w's convention, chi_1 and the phase."""
    assert _run(["theory", "--activation", "relu", "--sigma-w", str(math.sqrt(2))]) == 0
    text = capsys.readouterr().out
    assert "W ~ N(0, sigma_w^2/fan_in)" in text
    assert "critical: gradients keep their size" in text
    assert "1.414" in text


def test_theory_bad_activation_is_a_value_error() -> None:
    """An unknown activation raises ValueError (main turns it into a one-line error)."""
    with pytest.raises(ValueError, match="unknown activation"):
        _run(["theory", "--activation", "nope", "--sigma-w", "1"])


def _record(run_dir: Path) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    mods: list[torch.nn.Module] = []
    for _ in range(8):
        mods += [torch.nn.Linear(16, 16), torch.nn.Sigmoid()]
    net = torch.nn.Sequential(*mods)
    x, y = torch.randn(32, 16), torch.randn(32, 16)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with gw.watch(net, opt, run_dir=run_dir, sample_every=1):
        loss = torch.nn.functional.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, x, y


def test_explain_walks_a_recorded_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """explain RUN_DIR prints per-layer factors whose product is the model walk's ratio."""
    run_dir = tmp_path / "run"
    net, x, y = _record(run_dir)
    assert _run(["explain", str(run_dir), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = explain(net, (x, y))
    assert out["metric"] == "out_grad_norm" and out["step"] == 0
    assert out["measured_ratio"] == pytest.approx(ref.measured_ratio, rel=1e-3)
    gains = [r["measured_gain"] for r in out["rows"][:-1]]
    assert math.prod(gains) == pytest.approx(out["measured_ratio"], rel=1e-9)
    assert _run(["explain", str(run_dir)]) == 0
    text = capsys.readouterr().out
    assert "Going back from layer 8 to layer 1" in text and "factor" in text


def test_main_registers_both_commands() -> None:
    """`gradwatch --help` lists theory and explain (once every listed module exists)."""
    pytest.importorskip("gradwatch.cli.demo")
    from gradwatch.cli.main import build_parser

    help_text = build_parser().format_help()
    assert "theory" in help_text and "explain" in help_text
