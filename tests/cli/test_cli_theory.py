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


def test_theory_variance_flags_equal_their_square_roots(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--sigma-w2/--sigma-b2 are variances: they give what --sigma-w/--sigma-b give for their
    square roots, and the two spellings of one example (docs/theory.md) differ in phase."""
    outs = []
    for argv in (
        ["--sigma-w2", "1.5", "--sigma-b2", "0.05"],
        ["--sigma-w", str(math.sqrt(1.5)), "--sigma-b", str(math.sqrt(0.05))],
        ["--sigma-w", "1.5", "--sigma-b", "0.05"],
    ):
        assert _run(["theory", "--activation", "tanh", *argv, "--format", "json"]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[0]["chi_1"] == pytest.approx(outs[1]["chi_1"], rel=1e-12)
    assert outs[0]["sigma_w2"] == pytest.approx(1.5) and outs[0]["sigma_b2"] == pytest.approx(0.05)
    # an independent number: Schoenholz et al.'s tanh at sigma_w^2 = 1.5, sigma_b^2 = 0.05 is
    # ordered, chi_1 = 0.9386 (docs/theory.md); read as standard deviations it is chaotic
    assert (outs[0]["phase"], round(outs[0]["chi_1"], 4)) == ("ordered", 0.9386)
    assert (outs[2]["phase"], round(outs[2]["chi_1"], 3)) == ("chaotic", 1.137)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--sigma-w", "1", "--sigma-w2", "1.5"], "--sigma-w 1.0 .* and --sigma-w2 1.5 .* both"),
        (["--sigma-w", "1", "--sigma-b", "0", "--sigma-b2", "0.1"], "--sigma-b2 0.1 .* both"),
        ([], "give --sigma-w \\(standard deviation\\) or --sigma-w2 \\(variance\\)"),
        (["--sigma-w2", "-1"], "--sigma-w2 is a variance and must be >= 0, got -1.0"),
    ],
)
def test_theory_sigma_flag_errors_name_the_flags(argv: list[str], match: str) -> None:
    """Both spellings of one sigma, or neither for sigma_w, is an error naming the flags."""
    with pytest.raises(ValueError, match=match):
        _run(["theory", "--activation", "tanh", *argv])


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
    # The forward side beside it: the recorded share between inputs, one column.
    assert "between inputs" in text.splitlines()[1]
    assert all(r["between_inputs"] is not None for r in out["rows"])


def test_main_registers_both_commands() -> None:
    """`gradwatch --help` lists theory and explain (once every listed module exists)."""
    pytest.importorskip("gradwatch.cli.demo")
    from gradwatch.cli.main import build_parser

    help_text = build_parser().format_help()
    assert "theory" in help_text and "explain" in help_text
