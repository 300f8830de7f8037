"""Teacher-student regression: fit the outputs of a fixed random tanh network."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Task, generator, regression_baseline


@dataclass(frozen=True)
class TeacherStudentConfig:
    """The teacher network and the data drawn from it."""

    n_train: int = 2000
    n_test: int = 1000
    in_features: int = 16
    # A two-layer tanh teacher of width 32: smooth, learnable by a small student.
    teacher_width: int = 32
    # Output noise std, relative to the unit-variance teacher output.
    noise: float = 0.0
    seed: int = 0


def teacher_student(config: TeacherStudentConfig | None = None) -> Task:
    """Inputs x ~ N(0, I), targets a random teacher's output scaled to unit variance.

    The baseline (predict the mean) has MSE ~1, so a test MSE of 0.1 explains ~90%.

    Example:
        >>> teacher_student(TeacherStudentConfig(n_train=8, n_test=4)).y_train.shape
        torch.Size([8, 1])
    """
    config = config or TeacherStudentConfig()
    g = generator(config.seed)
    d, w = config.in_features, config.teacher_width
    w1 = torch.randn(d, w, generator=g) / d**0.5  # unit pre-activation variance
    w2 = torch.randn(w, 1, generator=g) / w**0.5
    n = config.n_train + config.n_test
    x = torch.randn(n, d, generator=g)
    y = torch.tanh(x @ w1) @ w2  # (n, 1)
    y = (y - y.mean()) / y.std()
    y = y + config.noise * torch.randn(n, 1, generator=g)
    x_train, x_test = x[: config.n_train], x[config.n_train :]
    y_train, y_test = y[: config.n_train], y[config.n_train :]
    return Task(
        "teacher_student", x_train, y_train, x_test, y_test, "regression", "flat", d, 1,
        baseline=regression_baseline(y_train, y_test),
    )  # fmt: skip
