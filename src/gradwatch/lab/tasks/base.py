"""The :class:`Task` every lab task returns: tensors, a loss and a metric."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F

TaskKind = Literal["classification", "regression"]
InputKind = Literal["flat", "sequence", "image"]


@dataclass(frozen=True, eq=False)
class Task:
    """A dataset ready to train on, with its loss and metric.

    Attributes:
        name: Task id, e.g. ``"adding"``.
        x_train, y_train, x_test, y_test: Inputs are float32: (N, F) for ``flat``, (N, T, F)
            for ``sequence``, (N, C, H, W) for ``image``. Classification targets are int64
            class ids, (N,) or (N, L) for L answers per example; regression targets (N, 1).
        kind: ``"classification"`` (cross-entropy, accuracy) or ``"regression"`` (MSE, MSE).
        input: Input layout, which decides the models that fit.
        in_features: Features per input (per time step for sequences, channels for images).
        out_features: Model outputs per example (L * classes for L answers).
        classes: Classes per answer (classification only, else 0).
        baseline: The metric of a trivial predictor (chance accuracy, or the MSE of predicting
            the training mean), measured on the test set, so "learned" can be judged.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    kind: TaskKind
    input: InputKind
    in_features: int
    out_features: int
    classes: int = 0
    baseline: float = float("nan")

    @property
    def metric_name(self) -> str:
        """``"accuracy"`` or ``"mse"``."""
        return "accuracy" if self.kind == "classification" else "mse"

    @property
    def higher_is_better(self) -> bool:
        return self.kind == "classification"

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over all answers, or mean squared error.

        Example:
            >>> import torch
            >>> t = Task("t", *(torch.zeros(1, 1),) * 4, "regression", "flat", 1, 1)
            >>> float(t.loss(torch.ones(2, 1), torch.zeros(2, 1)))
            1.0
        """
        if self.kind == "classification":
            return F.cross_entropy(output.reshape(-1, self.classes), target.reshape(-1))
        return F.mse_loss(output, target)

    @torch.no_grad()
    def metric(self, output: torch.Tensor, target: torch.Tensor) -> float:
        """Accuracy over all answers (classification) or mean squared error (regression)."""
        if self.kind == "classification":
            pred = output.reshape(-1, self.classes).argmax(dim=1)
            return float((pred == target.reshape(-1)).double().mean())
        return float(F.mse_loss(output.double(), target.double()))


def regression_baseline(y_train: torch.Tensor, y_test: torch.Tensor) -> float:
    """Test MSE of always predicting the training mean."""
    return float(((y_test.double() - y_train.double().mean()) ** 2).mean())


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: task data never touches the global RNG."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g
