"""Small models and state helpers shared by the remedies tests."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def make_mlp(
    depth: int = 6,
    width: int = 16,
    d_in: int = 5,
    d_out: int = 3,
    act: Callable[[], nn.Module] = nn.Sigmoid,
) -> nn.Sequential:
    """``depth`` Linear layers: d_in -> width -> ... -> width -> d_out, ``act`` between."""
    layers: list[nn.Module] = [nn.Linear(d_in, width), act()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), act()]
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(model: nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    now = model.state_dict()
    return now.keys() == saved.keys() and all(torch.equal(now[k], saved[k]) for k in now)


class _RNNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(5, 8, batch_first=True, nonlinearity="relu")
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def remedy_case(remedy: str) -> tuple[nn.Module, dict[str, object], torch.Tensor]:
    """A model fitting ``remedy``, the options it needs, and a batch for it."""
    x = torch.randn(16, 5)
    if remedy in ("lstm", "gru", "init_identity"):
        return _RNNNet(), {}, torch.randn(4, 6, 5)
    opts: dict[str, object] = {
        "init_lsuv": {"inputs": x},
        "layerwise_pretraining": {"data": [x], "epochs": 1},
        "clip_norm": {"max_norm": 1.0},
        "clip_value": {"clip_value": 0.5},
    }.get(remedy, {})
    act = nn.Tanh if remedy == "sigmoid" else nn.Sigmoid
    model = make_mlp(depth=5, width=8, d_in=5, act=act)
    if remedy in ("lr_warmup", "lower_lr", "raise_lr"):  # a scheduler on the optimizer of the model
        opts = {"optimizer": torch.optim.AdamW(model.parameters(), lr=1e-3)}
    return model, opts, x


def scheduled_rates(opt: torch.optim.Optimizer, scheduler: object, steps: int) -> list[list[float]]:
    """Every group's rate at each of ``steps`` optimizer steps, the scheduler stepped after
    each (as torch documents)."""
    out = []
    for _ in range(steps):
        out.append([float(g["lr"]) for g in opt.param_groups])
        opt.step()
        scheduler.step()  # type: ignore[attr-defined]
    return out


def chained_with_cosine(
    make: Callable[[torch.optim.Optimizer], object], steps: int = 20
) -> tuple[list[float], list[float]]:
    """The rate over ``steps`` steps (AdamW at 1e-3) under ``ChainedScheduler([make(opt),
    cosine])``, and under the same cosine (``T_max=steps``) alone."""
    opt = torch.optim.AdamW(make_mlp().parameters(), lr=1e-3)
    first = make(opt)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    chained = torch.optim.lr_scheduler.ChainedScheduler([first, cosine])  # type: ignore[list-item]
    alone_opt = torch.optim.AdamW(make_mlp().parameters(), lr=1e-3)
    alone = torch.optim.lr_scheduler.CosineAnnealingLR(alone_opt, T_max=steps)
    return (
        [r[0] for r in scheduled_rates(opt, chained, steps)],
        [r[0] for r in scheduled_rates(alone_opt, alone, steps)],
    )


def recorded_rates(
    model: nn.Module, opt: torch.optim.Optimizer, scheduler: object, steps: int
) -> list[float]:
    """The ``optimizer_lr`` a watch records over ``steps`` steps of ``model`` on random
    batches, ``scheduler`` stepped after each optimizer step."""
    import gradwatch as gw

    with gw.watch(model, opt, overhead=None) as w:
        for _ in range(steps):
            loss = model(torch.randn(8, 5)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            scheduler.step()  # type: ignore[attr-defined]
            w.log(loss=loss)
    return [float(v) for v in w.trace.scalar("optimizer_lr")]


def two_group_sgd() -> torch.optim.SGD:
    """SGD over a 3-layer MLP in two groups at rates 0.1 and 0.02, the second with its own
    momentum (a scheduler must treat each group by its own rate)."""
    model = make_mlp(depth=3)
    groups = [
        {"params": list(model[0].parameters()), "lr": 0.1},
        {"params": list(model[2].parameters()), "lr": 0.02, "momentum": 0.5},
    ]
    return torch.optim.SGD(groups, lr=0.05, momentum=0.9)


def group_settings(opt: torch.optim.Optimizer) -> list[dict[str, object]]:
    """Every group's settings but its parameters and rates (``lr``, and the ``initial_lr`` a
    scheduler adds): what a learning-rate remedy must leave as it was."""
    skip = ("params", "lr", "initial_lr")
    return [{k: v for k, v in g.items() if k not in skip} for g in opt.param_groups]
