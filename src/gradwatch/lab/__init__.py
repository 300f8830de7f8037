"""The lab: small models, local tasks, recorded runs, sweeps, studies and the demo.

Every run is a normal gradwatch run directory (``gw.load`` reads it). Names load lazily,
so ``import gradwatch.lab`` imports torch only when a name is used.

Example:
    >>> from gradwatch import lab
    >>> cfg = lab.load_config("src/gradwatch/lab/configs/deep_sigmoid.toml")  # doctest: +SKIP
    >>> lab.run(cfg, "runs/deep-sigmoid").test_metric  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, tuple[str, str]] = {
    "RunConfig": ("gradwatch.lab.config", "RunConfig"),
    "ConfigError": ("gradwatch.lab.config", "ConfigError"),
    "load_config": ("gradwatch.lab.config", "load_config"),
    "RunResult": ("gradwatch.lab.runner", "RunResult"),
    "run": ("gradwatch.lab.runner", "run"),
    "load_result": ("gradwatch.lab.runner", "load_result"),
    "sweep": ("gradwatch.lab.sweep", "sweep"),
    "run_demo": ("gradwatch.lab.demo", "run_demo"),
    "DemoConfig": ("gradwatch.lab.demo", "DemoConfig"),
    "run_study": ("gradwatch.lab.studies", "run_study"),
    "make_task": ("gradwatch.lab.tasks", "make_task"),
    "build_model": ("gradwatch.lab.models", "build_model"),
}

__all__ = [
    "ConfigError",
    "DemoConfig",
    "RunConfig",
    "RunResult",
    "build_model",
    "load_config",
    "load_result",
    "make_task",
    "run",
    "run_demo",
    "run_study",
    "sweep",
]

if TYPE_CHECKING:
    from .config import ConfigError, RunConfig, load_config
    from .demo import DemoConfig, run_demo
    from .models import build_model
    from .runner import RunResult, load_result, run
    from .studies import run_study
    from .sweep import sweep
    from .tasks import make_task


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'gradwatch.lab' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
