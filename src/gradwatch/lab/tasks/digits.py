"""scikit-learn's bundled handwritten digits (1,797 8x8 images; no download), three layouts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .base import InputKind, Task, generator

Layout = Literal["flat", "image", "sequence"]


@dataclass(frozen=True)
class DigitsConfig:
    """The split of the digits data."""

    # Fraction held out for testing: 25% leaves ~450 test images, enough for +-2% accuracy.
    test_fraction: float = 0.25
    # Seed of the train/test split; fixed so every run is scored on the same images.
    seed: int = 0


def _load(config: DigitsConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the digits tasks need scikit-learn; install it with `pip install gradwatch[lab]`"
        ) from exc
    if not 0.0 < config.test_fraction < 1.0:
        raise ValueError(
            f"DigitsConfig.test_fraction={config.test_fraction} must be strictly between 0 and 1"
        )
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32)  # (1797, 64), pixel values 0..16
    y = torch.tensor(data.target, dtype=torch.int64)  # (1797,)
    order = torch.randperm(len(x), generator=generator(config.seed))
    n_test = round(len(x) * config.test_fraction)
    test, train = order[:n_test], order[n_test:]
    # Standardise per pixel with training statistics; constant pixels (the corners) stay 0.
    mean = x[train].mean(dim=0)
    std = x[train].std(dim=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    x = (x - mean) / std
    return x[train], y[train], x[test], y[test]


def digits(config: DigitsConfig | None = None, layout: Layout = "flat") -> Task:
    """The digits task: 10 classes; ``layout`` flat (N, 64), image (N, 1, 8, 8) or sequence.

    ``sequence`` is sequential digits: one 8-pixel row per time step, (N, 8, 8).

    Example:
        >>> task = digits()
        >>> task.x_train.shape, task.x_test.shape
        (torch.Size([1348, 64]), torch.Size([449, 64]))
    """
    config = config or DigitsConfig()
    x_train, y_train, x_test, y_test = _load(config)
    shapes: dict[str, tuple[int, ...]] = {"flat": (64,), "image": (1, 8, 8), "sequence": (8, 8)}
    if layout not in shapes:
        raise ValueError(f"layout={layout!r}: use one of {sorted(shapes)}")
    shape = shapes[layout]
    names = {"flat": "digits", "image": "digits_image", "sequence": "sequential_digits"}
    in_features = {"flat": 64, "image": 1, "sequence": 8}[layout]
    input_kind: InputKind = layout
    counts = torch.bincount(y_train, minlength=10)
    return Task(
        name=names[layout],
        x_train=x_train.reshape(-1, *shape),
        y_train=y_train,
        x_test=x_test.reshape(-1, *shape),
        y_test=y_test,
        kind="classification",
        input=input_kind,
        in_features=in_features,
        out_features=10,
        classes=10,
        # Chance: always answering the most frequent training class.
        baseline=float((y_test == counts.argmax()).double().mean()),
    )
