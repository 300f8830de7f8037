"""Print gradwatch.theory's predictions next to measurements on random networks.

Run: ``PYTHONPATH=src python benchmarks/theory_check.py [--write-docs]`` (about a minute on
one CPU thread). The tables in docs/theory.md come from this script: ``--write-docs`` writes
them into its generated block (benchmarks/_docs.py). ``sigma_w``/``sigma_b`` are standard
deviations throughout (``W ~ N(0, sigma_w^2 / fan_in)``); the tables name the variance
``sigma_w^2`` where papers do.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gradwatch.theory import critical_sigma_w, explain, jacobian_spectrum, mean_field

SCRIPT = "benchmarks/theory_check.py"
#: The tanh chi_1 table's variances (sigma_w^2) at sigma_b^2 = 0.05; 1.5 is the example of
#: README.md and docs/theory.md, so the accuracy they quote is measured at their values.
CHI_SIGMA_W2 = (0.5, 1.0, 1.5, 2.0, 3.0)
CHI_COLUMNS = (
    "sigma_w^2",
    "q*",
    "chi_1 predicted",
    "measured (mean ± sd over seeds)",
    "rel. error",
)
SPECTRUM_COLUMNS = (
    "depth",
    "ReLU, Gaussian, He",
    "tanh, Gaussian, critical",
    "tanh, orthogonal, critical",
)
ESTIMATE_COLUMNS = ("quantity", "exact", "estimate (64 probes, 100 power steps)")
CORRELATION_COLUMNS = (
    "network",
    "chi_c predicted",
    "measured (mean ± sd over seeds)",
    "rel. error",
)
#: (label, activation, sigma_w^2, sigma_b^2, layers compared) of the correlation-map table:
#: tanh in the ordered phase at the chi_1 table's bias, from layer 6 to 18, and sigmoid at
#: PyTorch's default nn.Linear init (variance 1/(3 fan_in) for weights and bias; width 512)
#: from layer 1 to 3: it collapses ~50x a layer, and beyond layer 3 its share is under the
#: resolution of the recorder's float32 sums (~1e-7 of the variance).
CORRELATION_NETS = (
    ("tanh, sigma_w^2 = 0.5, sigma_b^2 = 0.05, layers 6-18", "tanh", 0.5, 0.05, (6, 18)),
    ("tanh, sigma_w^2 = 1.0, sigma_b^2 = 0.05, layers 6-18", "tanh", 1.0, 0.05, (6, 18)),
    ("sigmoid, PyTorch default init, layers 1-3", "sigmoid", 1 / 3, 1 / (3 * 512), (1, 3)),
)
CHAIN_COLUMNS = (
    "depth",
    "seed",
    "measured first/last",
    "chain-rule product",
    "\\|Δlog10\\| / \\|log10 measured\\|",
)

# The shared writer of generated doc blocks, beside this file (also when imported by tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _docs  # noqa: E402

#: Block name -> the header cells of the tables it holds (tests/docs/test_generated.py).
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {
    "": [CHI_COLUMNS, CORRELATION_COLUMNS, SPECTRUM_COLUMNS, ESTIMATE_COLUMNS, CHAIN_COLUMNS]
}


def measured_chi(sigma_w2: float, sigma_b2: float, seeds: int = 4) -> tuple[float, float]:
    """Per-layer factor of E|dL/dh|^2 in width-512 tanh MLPs (depth 24, batch 16): mean, sd."""
    width, depth, batch, skip = 512, 24, 16, 6
    per_seed = []
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, width, generator=g, dtype=torch.float64, requires_grad=True)
        a, hs = x, []
        for _ in range(depth):
            w = torch.randn(width, width, generator=g, dtype=torch.float64)
            b = torch.randn(width, generator=g, dtype=torch.float64)
            h = a @ (w * math.sqrt(sigma_w2 / width)).T + b * math.sqrt(sigma_b2)
            hs.append(h)
            a = torch.tanh(h)
        r = torch.randn(a.shape, generator=g, dtype=torch.float64)
        sq = [float(gr.square().mean()) for gr in torch.autograd.grad((a * r).sum(), hs)]
        per_seed.append((sq[skip] / sq[-1]) ** (1.0 / (depth - 1 - skip)))
    return float(np.mean(per_seed)), float(np.std(per_seed))


def measured_chi_c(
    activation: str,
    sigma_w2: float,
    sigma_b2: float,
    *,
    width: int = 512,
    depth: int = 24,
    batch: int = 32,
    seeds: int = 3,
    layers: tuple[int, int] = (6, 18),
) -> tuple[float, float]:
    """Per-layer factor of the share of the activations' variance that differs between
    inputs, as gradwatch records it (``act_between_inputs``, one step of ``gw.watch`` on a
    float64 random MLP fed inputs at the fixed-point variance ``q*``): ``(s[b] / s[a]) **
    (1 / (b - a))`` over ``layers = (a, b)``, after the transient; mean and sd over seeds.
    In the ordered phase the inputs' correlations approach 1 as ``1 - c ~ chi_c ** depth``
    (Schoenholz et al. 2017), and the share between inputs is ``1 - c``."""
    import gradwatch as gw

    act = {"tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}[activation]
    q_star = mean_field(activation, math.sqrt(sigma_w2), math.sqrt(sigma_b2)).q_star
    a, b = layers
    per_seed = []
    for seed in range(seeds):
        net = mlp(
            depth, width, act, math.sqrt(sigma_w2), math.sqrt(sigma_b2), orthogonal=False,
            seed=seed,
        ).double()  # fmt: skip
        x = torch.randn(batch, width, generator=torch.Generator().manual_seed(100 + seed))
        with gw.watch(net, overhead=None, on_finding=lambda finding: None) as w:
            net(x.double() * math.sqrt(q_star)).sum().backward()
            w.step()
        share = w.trace.matrix("act_between_inputs")[0]
        per_seed.append(float((share[b] / share[a]) ** (1.0 / (b - a))))
    return float(np.mean(per_seed)), float(np.std(per_seed))


def mlp(
    depth: int,
    width: int,
    act: type[torch.nn.Module],
    sw: float,
    sb: float,
    *,
    orthogonal: bool,
    seed: int,
) -> torch.nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    mods: list[torch.nn.Module] = []
    for _ in range(depth):
        lin = torch.nn.Linear(width, width)
        with torch.no_grad():
            if orthogonal:
                q, r = torch.linalg.qr(torch.randn(width, width, generator=g))
                lin.weight.copy_(sw * q * torch.sign(torch.diagonal(r)))
            else:
                lin.weight.copy_(torch.randn(width, width, generator=g) * sw / math.sqrt(width))
            lin.bias.copy_(torch.randn(width, generator=g) * sb)
        mods += [lin, act()]
    return torch.nn.Sequential(*mods)


def sections() -> list[str]:
    """The measured sections of docs/theory.md, as markdown (printed as they are measured)."""
    out: list[str] = []

    def emit(text: str) -> None:
        print(text, flush=True)
        out.append(text)

    docs = _docs
    chi_rows = []
    for s2 in CHI_SIGMA_W2:
        r = mean_field("tanh", math.sqrt(s2), math.sqrt(0.05))
        m, sd = measured_chi(s2, 0.05)
        chi_rows.append(
            [f"{s2}", f"{r.q_star:.4f}", f"{r.chi_1:.4f}", f"{m:.4f} ± {sd:.4f}",
             f"{m / r.chi_1 - 1:+.2%}"]
        )  # fmt: skip
    emit(
        "**chi_1 of tanh, `sigma_b^2 = 0.05`** (variances: `sigma_w = sqrt(sigma_w^2)`). "
        "Measured: width-512 random tanh MLPs, 24 layers, 16 inputs, float64; the per-layer "
        "factor is `(E|dL/dh_6|^2 / E|dL/dh_23|^2)^(1/17)` (after the transient), per seed; "
        "mean ± sd over 4 seeds. Test: within 5% (slow test), and a fast variant (14 layers, "
        "2 seeds) within 8%.\n\n" + docs.table(CHI_COLUMNS, chi_rows)
    )

    corr_rows = []
    for label, act_name, w2, b2, compared in CORRELATION_NETS:
        chi_c = mean_field(act_name, math.sqrt(w2), math.sqrt(b2)).chi_c
        m, sd = measured_chi_c(act_name, w2, b2, layers=compared)
        corr_rows.append([label, f"{chi_c:.4f}", f"{m:.4f} ± {sd:.4f}", f"{m / chi_c - 1:+.2%}"])
    emit(
        "**chi_c, the correlation map, against `act_between_inputs`.** In the ordered phase "
        "two inputs' representations converge (`c* = 1`) and `1 - c` shrinks by `chi_c` "
        "per layer (Schoenholz et al. 2017); the share of a layer's output variance that "
        "differs between inputs is that `1 - c`. Measured as gradwatch records it: one "
        "`gw.watch` step of width-512 random MLPs in float64, 24 layers, 32 inputs at the "
        "fixed-point variance, the per-layer factor of `act_between_inputs` between the "
        "layers named; mean ± sd over 3 seeds. Sigmoid collapses so fast that only its first "
        "layers are above the resolution of the recorder's float32 sums. Test: tanh at "
        "`sigma_w^2 = 0.5` within 10% (width 256, 16 layers, 2 seeds).\n\n"
        + docs.table(CORRELATION_COLUMNS, corr_rows)
    )

    relu = mean_field("relu", math.sqrt(2.0))
    selu = mean_field("selu", 1.0, 0.0, q_init=3.0)
    crit = critical_sigma_w("relu")
    sb = math.sqrt(0.05)
    emit(
        "**Closed forms.**\n\n"
        f"- ReLU at He init: `chi_1 - 1 = {relu.chi_1 - 1:.1e}`; critical `sigma_w` = "
        f"{crit:.10f} (`sqrt 2` = {math.sqrt(2):.10f}).\n"
        f"- SELU at LeCun init, iterated from `q = 3`: `q* - 1 = {selu.q_star - 1:.1e}`, "
        f"`E[phi] = {selu.act_mean:.1e}`.\n"
        f"- tanh at `sigma_b^2 = 0.05`: critical `sigma_w^2` = "
        f"{critical_sigma_w('tanh', sb) ** 2:.4f}."
    )

    sbt = 1e-2
    swt = critical_sigma_w("tanh", sbt)
    qt = mean_field("tanh", swt, sbt).q_star
    spec_rows = []
    for depth in (2, 8, 32):
        cols = [str(depth)]
        for act, sw, s_b, orth, xs in (
            (torch.nn.ReLU, math.sqrt(2.0), 0.0, False, 1.0),
            (torch.nn.Tanh, swt, sbt, False, math.sqrt(qt)),
            (torch.nn.Tanh, swt, sbt, True, math.sqrt(qt)),
        ):
            vals = []
            for seed in range(3):
                net = mlp(depth, 128, act, sw, s_b, orthogonal=orth, seed=seed)
                x = xs * torch.randn(4, 128, generator=torch.Generator().manual_seed(100 + seed))
                vals.append(jacobian_spectrum(net, x, method="exact").spread)
            cols.append(f"{np.mean(vals):.3f}")
        spec_rows.append(cols)
    emit(
        "**Jacobian spectrum spread** `var(s^2) / mean(s^2)^2`, width 128, 3 seeds x 4 inputs, "
        f"exact SVD. tanh: `sigma_b = {sbt}` and `sigma_w = {swt:.4f}` (standard deviations) "
        f"on the critical line, `q* = {qt:.3f}` (inputs scaled to that variance). As in "
        "Pennington et al. (2017), ReLU's spread grows with depth, and critical tanh with "
        "orthogonal weights stays two orders of magnitude narrower.\n\n"
        + docs.table(SPECTRUM_COLUMNS, spec_rows)
    )

    net = mlp(4, 32, torch.nn.Tanh, 1.2, 0.1, orthogonal=False, seed=1)
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(2))
    ex = jacobian_spectrum(net, x, method="exact")
    es = jacobian_spectrum(net, x, method="estimate", n_probes=64, n_iter=100)
    emit(
        "**Estimates vs exact** (4-layer tanh MLP, width 32, 16 inputs; tests: mean 5%, "
        "variance 15%, max 1%):\n\n"
        + docs.table(
            ESTIMATE_COLUMNS,
            [
                ["mean s^2", f"{ex.mean_sq:.4f}", f"{es.mean_sq:.4f}"],
                ["var s^2", f"{ex.var_sq:.4f}", f"{es.var_sq:.4f}"],
                ["max s", f"{ex.max_sv:.5f}", f"{es.max_sv:.5f}"],
            ],
        )
    )

    chain_rows = []
    for depth in (10, 20):
        for seed in range(2):
            torch.manual_seed(seed)
            mods: list[torch.nn.Module] = []
            for _ in range(depth):
                mods += [torch.nn.Linear(64, 64), torch.nn.Sigmoid()]
            walk = explain(torch.nn.Sequential(*mods), torch.randn(64, 64))
            assert walk.predicted_ratio is not None
            lm = math.log10(walk.measured_ratio)
            rel = abs(math.log10(walk.predicted_ratio) - lm) / abs(lm)
            chain_rows.append(
                [str(depth), str(seed), f"{walk.measured_ratio:.2e}",
                 f"{walk.predicted_ratio:.2e}", f"{rel:.3f}"]
            )  # fmt: skip
    emit(
        "**Chain rule on deep sigmoid MLPs** at PyTorch's default init (width 64, batch 64; "
        "the test asks `|log10 pred - log10 meas| <= 0.2 |log10 meas|`):\n\n"
        + docs.table(CHAIN_COLUMNS, chain_rows)
    )
    print(f"\nExample sentence (depth 20, seed 1): {walk.sentence}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-docs", action="store_true", help="update docs/theory.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    body = sections()
    took = time.perf_counter() - t0
    print(f"\n(total {took:.0f} s)")
    if args.write_docs:
        docs = _docs
        head = docs.header(
            f"PYTHONPATH=src python {SCRIPT} --write-docs", f"Took {took:.0f} s on one thread."
        )
        root = Path(__file__).resolve().parents[1]
        docs.replace_block(root / "docs" / "theory.md", SCRIPT, "\n\n".join([head, *body]))
        print("updated docs/theory.md")


if __name__ == "__main__":
    main()
