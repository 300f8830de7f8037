"""Numbers the prose quotes agree with what the code computes and the generated tables
measured: README's mean-field example (its flags, chi_1, phase and accuracy claim)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from ._pages import generated_blocks, tables
from ._runner import ROOT


def _readme_theory() -> tuple[list[str], float, str, float]:
    """(flags, quoted chi_1, quoted phase, quoted accuracy in %) of README's theory example."""
    text = " ".join((ROOT / "README.md").read_text().split())  # one line: claims wrap
    m = re.search(
        r"`gradwatch theory (?P<flags>[^`]+)`.*?χ₁ = (?P<chi>[\d.]+) \((?P<phase>\w+).*?"
        r"to within (?P<within>[\d.]+)%",
        text,
    )
    assert m, "README.md no longer has its `gradwatch theory ...` example with chi_1"
    return (
        m.group("flags").split(),
        float(m.group("chi")),
        m.group("phase"),
        float(m.group("within")),
    )


def test_readme_theory_example_matches_the_command() -> None:
    """Running README's own `gradwatch theory` flags gives the chi_1 and phase it quotes."""
    flags, chi, phase, _ = _readme_theory()
    proc = subprocess.run(
        [sys.executable, "-m", "gradwatch", "theory", *flags, "--format", "json"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    out = json.loads(proc.stdout)
    assert round(out["chi_1"], 4) == chi
    assert out["phase"] == phase


def test_readme_accuracy_claim_was_measured_at_its_values() -> None:
    """The "within X%" README quotes holds in docs/theory.md's generated chi_1 table at the
    variance README passes (so the claim is measured where it is made)."""
    flags, _, _, within = _readme_theory()
    assert "--sigma-w2" in flags and flags[flags.index("--sigma-b2") + 1] == "0.05", (
        "the claim is measured for variances at sigma_b^2 = 0.05; quote it at those flags"
    )
    sigma_w2 = flags[flags.index("--sigma-w2") + 1]
    page = ROOT / "docs" / "theory.md"
    (block,) = [b for b in generated_blocks(page) if b.script == "benchmarks/theory_check.py"]
    (chi_table,) = [t for t in tables("\n".join(block.lines)) if t.header[0] == "sigma_w^2"]
    rows = {r[0]: r for r in chi_table.rows}
    assert sigma_w2 in rows, f"sigma_w^2 = {sigma_w2} is not measured in docs/theory.md"
    error = abs(float(rows[sigma_w2][-1].rstrip("%")))
    assert error <= within
