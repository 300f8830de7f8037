"""Lab config: parsing, round trips and errors that name the field and the allowed values."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from gradwatch.lab.config import (
    ConfigError,
    RunConfig,
    load_config,
    load_sweep,
    with_override,
)
from gradwatch.lab.models import MLPConfig, RecurrentConfig

BASE: dict[str, Any] = {"model": {"kind": "mlp", "depth": 3}, "task": {"name": "digits"}}


def _with(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def test_parses_the_toml_layout() -> None:
    """Model kind, task name and top-level fields land in the right dataclasses."""
    cfg = RunConfig.from_dict(_with(lr=1, remedies=["relu", "init_he"], steps=5))
    assert cfg.model == MLPConfig(depth=3)
    assert cfg.task == "digits" and cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.remedies == ("relu", "init_he")


def test_round_trips_through_dict() -> None:
    """from_dict(to_dict(c)) == c, options included."""
    cfg = RunConfig.from_dict(
        {
            "model": {"kind": "recurrent", "cell": "rnn_tanh", "recurrent_scale": 3},
            "task": {"name": "adding", "seq_len": 7},
            "remedies": ["clip_norm"],
            "remedy_options": {"clip_norm": {"max_norm": 0.5}},
        }
    )
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert isinstance(cfg.model, RecurrentConfig) and cfg.model.recurrent_scale == 3.0


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (_with(learning_rate=0.1), r"unknown field 'learning_rate'.*allowed fields: .*'lr'"),
        ({**BASE, "model": {"kind": "mlp", "dept": 3}}, r"'model.dept'.*'depth'"),
        ({**BASE, "model": {"kind": "mlp", "depth": "3"}}, r"model.depth must be an integer"),
        ({**BASE, "model": {"kind": "mlp", "depth": 2.5}}, r"model.depth must be an integer"),
        (_with(lr="fast"), r"lr must be a number, got str 'fast'"),
        (_with(optimizer="rmsprop"), r"optimizer='rmsprop'.*\['sgd', 'momentum', 'adam'\]"),
        ({**BASE, "model": {"kind": "mlp", "activation": "relu6"}}, r"model.activation.*'selu'"),
        ({**BASE, "model": {"kind": "mlp", "residual": 1}}, r"model.residual must be true"),
        ({**BASE, "model": {"kind": "lenet"}}, r"model.kind='lenet'.*'recurrent'"),
        ({**BASE, "task": {"name": "mnist"}}, r"task.name='mnist'.*'adding'"),
        ({**BASE, "task": {"name": "adding", "seq_len": 5}}, r"'mlp' cannot read task 'adding'"),
        ({**BASE, "model": {"kind": "recurrent"}}, r"'recurrent' cannot.*sequential_digits"),
        (_with(remedies=["lstm"]), r"'lstm' does not apply to model.kind='mlp'"),
        (_with(remedies=["dropout"]), r"'dropout' is not a remedy id"),
        (_with(remedies=["relu", "relu"]), r"twice"),
        (_with(remedies="relu"), r"remedies must be a list"),
        (_with(remedy_options={"clip_norm": {"max_norm": 1}}), r"'clip_norm' is not in remedies"),
        (
            _with(remedies=["clip_norm"], remedy_options={"clip_norm": {"norm": 1}}),
            r"clip_norm.norm.*max_norm",
        ),
        (
            _with(remedies=["lr_warmup"], steps=300),
            r"remedy_options.lr_warmup.steps is needed with optimizer='sgd'.*steps = 30",
        ),
        (_with(steps=0), r"steps=0 must be >= 1"),
        (_with(lr=-1), r"lr=-1.0 must be > 0"),
        (_with(name="../escaped"), r"name='../escaped' must be a plain label.*--out"),
        (_with(name="/tmp/abs"), r"name='/tmp/abs' must be a plain label"),
        (_with(name=".."), r"name='..' must be a plain label"),
        ({"task": "digits"}, r"missing \[model\]"),
    ],
)  # fmt: skip
def test_invalid_configs_name_field_and_allowed(data: dict[str, Any], pattern: str) -> None:
    """Every invalid config fails with a ConfigError naming the field and what is allowed."""
    with pytest.raises(ConfigError, match=pattern):
        RunConfig.from_dict(data)


def test_config_error_is_a_value_error() -> None:
    """ConfigError is a ValueError, so the CLI prints it as a one-line error."""
    assert issubclass(ConfigError, ValueError)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    """A broken TOML file and a missing file give errors naming the path."""
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match=r"nope\.toml"):
        load_config(tmp_path / "nope.toml")


def test_example_configs_are_valid() -> None:
    """Every shipped example config parses (sweeps expand) without error."""
    from gradwatch.lab.sweep import expand

    folder = files("gradwatch.lab") / "configs"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".toml"))
    assert len(names) >= 5
    for name in names:
        path = Path(str(folder / name))
        if "sweep" in path.read_text():
            base, grid = load_sweep(path)
            assert expand(base, grid)
        else:
            load_config(path).validate()


def test_with_override_sets_nested_paths() -> None:
    """A dotted path replaces one nested value and leaves the input unchanged."""
    data = {"model": {"kind": "mlp", "depth": 3}, "task": "digits"}
    out = with_override(data, "model.depth", 7)
    assert out["model"] == {"kind": "mlp", "depth": 7} and data["model"]["depth"] == 3
    assert with_override(data, "task.test_fraction", 0.5)["task"] == {
        "name": "digits",
        "test_fraction": 0.5,
    }


def test_sweep_table_needs_lists(tmp_path: Path) -> None:
    """A sweep value that is not a list is rejected, naming its path."""
    path = tmp_path / "s.toml"
    path.write_text('task = "digits"\n[model]\nkind = "mlp"\n[sweep.model]\ndepth = 3\n')
    with pytest.raises(ConfigError, match=r"sweep.model.depth must be a non-empty list"):
        load_sweep(path)


def test_every_example_config_trains_a_few_steps() -> None:
    """Each shipped example (sweeps: their first point) runs 3 steps end to end."""
    import dataclasses

    from gradwatch.lab.runner import run
    from gradwatch.lab.sweep import expand

    folder = files("gradwatch.lab") / "configs"
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".toml"):
            continue
        path = Path(str(entry))
        if "[sweep]" in path.read_text():
            config = expand(*load_sweep(path))[0].config
        else:
            config = load_config(path)
        result = run(dataclasses.replace(config, steps=3, batch_size=8))
        assert result.steps == 3, entry.name


def test_lab_run_never_writes_outside_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config whose name is a path is refused before anything is written (issue 15)."""
    from gradwatch.cli.main import main

    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        'name = "../escaped"\nsteps = 2\n[model]\nkind = "mlp"\ndepth = 2\n[task]\nname = "spirals"\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["lab", "run", str(cfg)]) == 2
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "runs").exists()
