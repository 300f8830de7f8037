"""``RunConfig``: one lab experiment, parsed from TOML and validated before anything trains.

A config file looks like this (every key but ``[model] kind`` and ``[task] name`` optional)::

    name = "deep-sigmoid"
    remedies = ["relu", "init_he"]      # remedy ids, applied in order
    optimizer = "sgd"
    lr = 0.1
    steps = 300
    batch_size = 64
    seed = 0

    [model]
    kind = "mlp"                        # mlp | recurrent | transformer | cnn
    depth = 20
    activation = "sigmoid"

    [task]
    name = "digits"

    [remedy_options.clip_norm]          # keyword options for one remedy
    max_norm = 1.0

A ``[sweep]`` table (read by :func:`load_sweep`) maps field paths to lists of values.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from gradwatch.diagnosis import REMEDY_IDS
from gradwatch.remedies.lower_lr import RATE_FACTORS, check_factor

from .models import MODEL_CONFIGS, ModelConfig, model_kind
from .models.common import OneOf
from .remedies import MODEL_REMEDIES, options_for
from .tasks import TASK_INPUTS, TASKS

Optimizer = Literal["sgd", "momentum", "adam"]
OPTIMIZERS: tuple[str, ...] = Optimizer.__args__  # type: ignore[attr-defined]

#: The input layout each model kind reads.
MODEL_INPUTS: dict[str, tuple[str, ...]] = {
    "mlp": ("flat",),
    "cnn": ("image",),
    "recurrent": ("sequence",),
    "transformer": ("sequence",),
}


class ConfigError(ValueError):
    """An invalid lab config; the message names the field, the value and what is allowed."""


@dataclass(frozen=True)
class RunConfig:
    """One lab run: model x task x remedies x optimizer x steps x seed.

    Example:
        >>> from gradwatch.lab.models import MLPConfig
        >>> cfg = RunConfig(model=MLPConfig(depth=3), task="digits", steps=10)
        >>> cfg.validate().task
        'digits'
    """

    model: ModelConfig
    # Task name (see gradwatch.lab.tasks.TASKS); its options go in task_config.
    task: str
    # The task's own config dataclass; None means its defaults.
    task_config: Any = None
    # Remedy ids (gradwatch.diagnosis.REMEDY_IDS), applied in order before training.
    remedies: tuple[str, ...] = ()
    # Keyword options per remedy id, e.g. {"clip_norm": {"max_norm": 1.0}}.
    remedy_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Plain SGD by default: adaptive optimizers hide vanishing gradients by rescaling them.
    optimizer: Optimizer = "sgd"
    lr: float = 0.1
    # Momentum for optimizer = "momentum" (0.9 is the common choice).
    momentum: float = 0.9
    steps: int = 300
    batch_size: int = 64
    # Seeds the model init and the data order (the task data has its own seed).
    seed: int = 0
    # Record every `every` steps and sample activations every `sample_every` steps.
    every: int = 1
    sample_every: int = 10
    # A label for tables; defaults to the run's directory name.
    name: str = ""

    def validate(self) -> RunConfig:
        """Check combinations the types cannot; return self, or raise :class:`ConfigError`."""
        kind = model_kind(self.model)
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r} is not known; allowed: {sorted(TASKS)}")
        task_cls = TASKS[self.task][0]
        if self.task_config is not None and not isinstance(self.task_config, task_cls):
            raise ConfigError(
                f"task_config for task {self.task!r} must be a {task_cls.__name__}, "
                f"got {type(self.task_config).__name__}"
            )
        layout = TASK_INPUTS[self.task]
        if layout not in MODEL_INPUTS[kind]:
            fitting = sorted(t for t, lay in TASK_INPUTS.items() if lay in MODEL_INPUTS[kind])
            raise ConfigError(
                f"model.kind={kind!r} cannot read task {self.task!r} ({layout} inputs); "
                f"tasks for a {kind}: {fitting}"
            )
        for rid in self.remedies:
            if rid not in REMEDY_IDS:
                raise ConfigError(f"remedies: {rid!r} is not a remedy id; allowed: {REMEDY_IDS}")
            if rid not in MODEL_REMEDIES[kind]:
                raise ConfigError(
                    f"remedies: {rid!r} does not apply to model.kind={kind!r}; "
                    f"allowed for a {kind}: {list(MODEL_REMEDIES[kind])}"
                )
        if len(set(self.remedies)) != len(self.remedies):
            raise ConfigError(f"remedies={list(self.remedies)} lists a remedy twice")
        for rid in self.remedies:
            try:
                options_for(rid, self.remedy_options)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        warmup = (
            options_for("lr_warmup", self.remedy_options) if "lr_warmup" in self.remedies else {}
        )
        if warmup and warmup["steps"] is None and self.optimizer != "adam":
            # the untuned length, 2 / (1 - beta2), is Adam's (gradwatch.remedies.lr_warmup)
            raise ConfigError(
                f"remedy_options.lr_warmup.steps is needed with optimizer={self.optimizer!r}: "
                "the default length, 2 / (1 - beta2), exists only for adam; set it, e.g. "
                f"steps = {max(1, self.steps // 10)} (a tenth of the run)"
            )
        for scaled in RATE_FACTORS:
            if scaled in self.remedies:
                factor = options_for(scaled, self.remedy_options)["factor"]
                try:
                    check_factor(factor, f"remedy_options.{scaled}.factor", remedy=scaled)
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None
        for rid in self.remedy_options:
            if rid not in self.remedies:
                raise ConfigError(
                    f"remedy_options.{rid} is given but {rid!r} is not in "
                    f"remedies={list(self.remedies)}"
                )
        for name in ("steps", "batch_size", "every", "sample_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed} must be >= 0")
        # The name becomes a directory under runs/: a path in it would write elsewhere.
        if any(c in self.name for c in "/\\\0") or self.name in (".", ".."):
            raise ConfigError(
                f"name={self.name!r} must be a plain label (it names the run's directory); "
                "drop the path separators, or pass the directory as `--out`"
            )
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr} must be > 0")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum={self.momentum} must be in [0, 1)")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data, in the TOML file's layout (round-trips via from_dict)."""
        out: dict[str, Any] = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("model", "task", "task_config", "remedy_options")
        }
        out["remedies"] = list(self.remedies)
        out["model"] = {"kind": model_kind(self.model), **dataclasses.asdict(self.model)}
        task_config = self.task_config or TASKS[self.task][0]()
        out["task"] = {"name": self.task, **dataclasses.asdict(task_config)}
        out["remedy_options"] = {k: dict(v) for k, v in self.remedy_options.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Parse and validate the TOML layout; errors name the field and the allowed values.

        Example:
            >>> RunConfig.from_dict({"model": {"kind": "mlp"}, "task": {"name": "spirals"}}).task
            'spirals'
        """
        data = dict(data)
        data.pop("sweep", None)
        top = {f.name for f in dataclasses.fields(cls)} - {"task_config"}
        unknown = sorted(set(data) - top)
        if unknown:
            raise ConfigError(f"unknown field {unknown[0]!r}; allowed fields: {sorted(top)}")
        for required in ("model", "task"):
            if required not in data:
                raise ConfigError(f"missing [{required}] table")
        model_table = _table(data.pop("model"), "model")
        kind = model_table.pop("kind", None)
        if kind not in MODEL_CONFIGS:
            raise ConfigError(f"model.kind={kind!r} is not known; allowed: {sorted(MODEL_CONFIGS)}")
        model = _build(MODEL_CONFIGS[kind], model_table, "model")
        task_table = data.pop("task")
        if isinstance(task_table, str):  # task = "digits" shorthand
            task_table = {"name": task_table}
        task_table = _table(task_table, "task")
        task_name = task_table.pop("name", None)
        if task_name not in TASKS:
            raise ConfigError(f"task.name={task_name!r} is not known; allowed: {sorted(TASKS)}")
        task_config = _build(TASKS[task_name][0], task_table, "task")
        options = _table(data.pop("remedy_options", {}), "remedy_options")
        for rid, opts in options.items():
            options[rid] = _table(opts, f"remedy_options.{rid}")
        rest = _build(cls, data, "", skip={"model", "task", "task_config", "remedy_options"})
        return dataclasses.replace(
            rest, model=model, task=task_name, task_config=task_config, remedy_options=options
        ).validate()


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table, got {type(value).__name__} {value!r}")
    return dict(value)


def _check(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to the type ``hint`` allows, or a ConfigError naming ``where``."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        choices = [m for m in hint.__metadata__ if isinstance(m, OneOf)]
        value = _check(value, hint.__origin__, where)
        if choices and value not in choices[0].choices:
            raise ConfigError(
                f"{where}={value!r} is not allowed; allowed: {list(choices[0].choices)}"
            )
        return value
    if origin is Literal:
        if value not in hint.__args__:
            raise ConfigError(f"{where}={value!r} is not allowed; allowed: {list(hint.__args__)}")
        return value
    if origin in (Union, types.UnionType):
        args = [a for a in hint.__args__ if a is not type(None)]
        if value is None and len(args) < len(hint.__args__):
            return None
        errors = []
        for arg in args:
            try:
                return _check(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {type(value).__name__} {value!r}")
        return tuple(_check(v, hint.__args__[0], f"{where}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {type(value).__name__} {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {type(value).__name__} {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {type(value).__name__} {value!r}")
        return value
    return value  # Any, Mapping: checked by validate()


def _build(cls: type[Any], table: Mapping[str, Any], where: str, skip: set[str] = set()) -> Any:  # noqa: B006
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    prefix = f"{where}." if where else ""
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise ConfigError(f"unknown field {prefix + unknown[0]!r}; allowed fields: {sorted(names)}")
    values = {k: _check(v, hints[k], f"{prefix}{k}") for k, v in table.items()}
    if skip:  # RunConfig: placeholders for the parts parsed separately
        values.update(model=None, task="")
    return cls(**values)


def _read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise ImportError(
                "reading lab configs on Python 3.10 needs tomli: `pip install tomli` "
                "(Python 3.11+ has tomllib built in)"
            ) from exc
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    with path.open("rb") as fh:
        try:
            return tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a lab config TOML file (its ``[sweep]`` table, if any, is ignored).

    Example:
        >>> from importlib.resources import files
        >>> load_config(files("gradwatch.lab") / "configs" / "deep_sigmoid.toml").task
        'digits'
    """
    return RunConfig.from_dict(_read_toml(path))


def load_sweep(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The base config (as data) and its ``[sweep]`` grid as {dotted field path: values}.

    Nested sweep tables are flattened: ``[sweep.model] depth = [5, 10]`` is ``model.depth``.
    """
    data = _read_toml(path)
    sweep = data.pop("sweep", {})
    if not isinstance(sweep, Mapping) or not sweep:
        raise ConfigError(f"{path}: a sweep needs a non-empty [sweep] table of lists")
    grid: dict[str, list[Any]] = {}

    def flatten(table: Mapping[str, Any], prefix: str) -> None:
        for key, value in table.items():
            if isinstance(value, Mapping):
                flatten(value, f"{prefix}{key}.")
            elif isinstance(value, list) and value:
                grid[f"{prefix}{key}"] = value
            else:
                raise ConfigError(
                    f"sweep.{prefix}{key} must be a non-empty list of values, got {value!r}"
                )

    flatten(sweep, "")
    return data, grid


def with_override(data: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of config data with the dotted field ``path`` set to ``value``.

    Example:
        >>> with_override({"model": {"kind": "mlp"}}, "model.depth", 5)["model"]
        {'kind': 'mlp', 'depth': 5}
    """
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    head, _, rest = path.partition(".")
    if not rest:
        out[head] = value
        return out
    if head == "task" and isinstance(out.get("task"), str):
        out["task"] = {"name": out["task"]}
    out[head] = with_override(out.get(head, {}), rest, value)
    return out
