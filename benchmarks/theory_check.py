"""Print gradwatch.theory's predictions next to measurements on random networks.

Run: ``PYTHONPATH=src python benchmarks/theory_check.py`` (about a minute on one CPU thread).
The tables in docs/theory.md come from this script.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from gradwatch.theory import critical_sigma_w, explain, jacobian_spectrum, mean_field


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


def main() -> None:
    torch.set_num_threads(1)
    t0 = time.perf_counter()

    print("## chi_1 of tanh, sigma_b^2 = 0.05: predicted vs measured (width 512, 4 seeds)\n")
    print("| sigma_w^2 | q* | chi_1 predicted | measured (mean ± sd over seeds) | rel. error |")
    print("|---|---|---|---|---|")
    for s2 in (0.5, 1.0, 1.5, 2.0, 3.0):
        r = mean_field("tanh", math.sqrt(s2), math.sqrt(0.05))
        m, sd = measured_chi(s2, 0.05)
        print(
            f"| {s2} | {r.q_star:.4f} | {r.chi_1:.4f} | {m:.4f} ± {sd:.4f} | "
            f"{m / r.chi_1 - 1:+.2%} |"
        )

    print("\n## Closed forms\n")
    relu = mean_field("relu", math.sqrt(2.0))
    selu = mean_field("selu", 1.0, 0.0, q_init=3.0)
    crit = critical_sigma_w("relu")
    print(
        f"- ReLU, He init: chi_1 - 1 = {relu.chi_1 - 1:.1e}; "
        f"critical sigma_w = {crit:.10f} (sqrt 2 = {math.sqrt(2):.10f})"
    )
    print(
        f"- SELU, LeCun init, from q = 3: q* - 1 = {selu.q_star - 1:.1e}, "
        f"E[phi] = {selu.act_mean:.1e}"
    )
    sb = math.sqrt(0.05)
    print(f"- tanh, sigma_b^2 = 0.05: critical sigma_w^2 = {critical_sigma_w('tanh', sb) ** 2:.4f}")

    print("\n## Jacobian spectrum spread var(s^2)/mean(s^2)^2, width 128, 3 seeds x 4 inputs\n")
    sbt = 1e-2
    swt = critical_sigma_w("tanh", sbt)
    qt = mean_field("tanh", swt, sbt).q_star
    print(f"(tanh: sigma_w = {swt:.4f} on the critical line for sigma_b = {sbt}, q* = {qt:.4f})\n")
    print("| depth | ReLU, Gaussian, He | tanh, Gaussian, critical | tanh, orthogonal, critical |")
    print("|---|---|---|---|")
    for depth in (2, 8, 32):
        cols = []
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
        print(f"| {depth} | " + " | ".join(cols) + " |")

    print("\n## Estimates vs exact spectrum (4-layer tanh MLP, width 32, 16 inputs)\n")
    net = mlp(4, 32, torch.nn.Tanh, 1.2, 0.1, orthogonal=False, seed=1)
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(2))
    ex = jacobian_spectrum(net, x, method="exact")
    es = jacobian_spectrum(net, x, method="estimate", n_probes=64, n_iter=100)
    print("| quantity | exact | estimate (64 probes, 100 power steps) |")
    print("|---|---|---|")
    print(f"| mean s^2 | {ex.mean_sq:.4f} | {es.mean_sq:.4f} |")
    print(f"| var s^2 | {ex.var_sq:.4f} | {es.var_sq:.4f} |")
    print(f"| max s | {ex.max_sv:.5f} | {es.max_sv:.5f} |")

    print("\n## Chain rule on deep sigmoid MLPs at PyTorch's default init (width 64, batch 64)\n")
    print(
        "| depth | seed | measured first/last | chain-rule product | |Δlog10| / |log10 measured| |"
    )
    print("|---|---|---|---|---|")
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
            print(
                f"| {depth} | {seed} | {walk.measured_ratio:.2e} | "
                f"{walk.predicted_ratio:.2e} | {rel:.3f} |"
            )
    print(f"\nExample sentence (depth 20, seed 1): {walk.sentence}")
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
