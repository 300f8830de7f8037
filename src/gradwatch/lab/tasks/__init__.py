"""Lab tasks, all generated locally or from scikit-learn's bundled digits (no download).

``make_task(name, config)`` builds one by name; ``TASK_CONFIGS`` maps each name to its config
dataclass (the ``[task]`` table of a lab config).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Task
from .digits import DigitsConfig, digits
from .sequences import (
    AddingConfig,
    CopyMemoryConfig,
    TemporalOrderConfig,
    adding,
    copy_memory,
    temporal_order,
)
from .spirals import SpiralsConfig, spirals
from .teacher_student import TeacherStudentConfig, teacher_student

TaskConfig = (
    DigitsConfig
    | SpiralsConfig
    | TeacherStudentConfig
    | AddingConfig
    | CopyMemoryConfig
    | TemporalOrderConfig
)

#: task name -> (config class, builder).
TASKS: dict[str, tuple[type[Any], Callable[[Any], Task]]] = {
    "digits": (DigitsConfig, lambda c: digits(c, "flat")),
    "digits_image": (DigitsConfig, lambda c: digits(c, "image")),
    "sequential_digits": (DigitsConfig, lambda c: digits(c, "sequence")),
    "spirals": (SpiralsConfig, spirals),
    "teacher_student": (TeacherStudentConfig, teacher_student),
    "adding": (AddingConfig, adding),
    "copy_memory": (CopyMemoryConfig, copy_memory),
    "temporal_order": (TemporalOrderConfig, temporal_order),
}

#: The input layout of each task: decides which models fit it.
TASK_INPUTS: dict[str, str] = {
    "digits": "flat",
    "digits_image": "image",
    "sequential_digits": "sequence",
    "spirals": "flat",
    "teacher_student": "flat",
    "adding": "sequence",
    "copy_memory": "sequence",
    "temporal_order": "sequence",
}


def make_task(name: str, config: Any = None) -> Task:
    """Build task ``name`` from its config (None: the defaults).

    Example:
        >>> make_task("adding", AddingConfig(seq_len=5, n_train=3, n_test=2)).x_test.shape
        torch.Size([2, 5, 2])
    """
    if name not in TASKS:
        raise ValueError(f"task name={name!r} is not known; use one of {sorted(TASKS)}")
    cls, build = TASKS[name]
    if config is None:
        config = cls()
    elif not isinstance(config, cls):
        raise TypeError(f"task {name!r} takes a {cls.__name__}, got {type(config).__name__}")
    return build(config)


__all__ = [
    "TASKS",
    "TASK_INPUTS",
    "AddingConfig",
    "CopyMemoryConfig",
    "DigitsConfig",
    "SpiralsConfig",
    "Task",
    "TaskConfig",
    "TeacherStudentConfig",
    "TemporalOrderConfig",
    "adding",
    "copy_memory",
    "digits",
    "make_task",
    "spirals",
    "teacher_student",
    "temporal_order",
]
