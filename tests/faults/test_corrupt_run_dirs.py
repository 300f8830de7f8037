"""Damaged and foreign run directories: one TraceError naming the file for ``gw.load``, and
one line naming the path with exit code 2 for every command that reads a run."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gradwatch as gw
from gradwatch.cli.main import main


def _meta(run: Path) -> dict[str, object]:
    return json.loads((run / "meta.json").read_text())


def _set_meta(run: Path, **changes: object) -> None:
    meta = _meta(run)
    meta.update(changes)
    (run / "meta.json").write_text(json.dumps(meta))


def _retag(file: Path, tag: bytes) -> None:
    from gradwatch.trace.schema import FLUSH_KEY

    table = pq.read_table(file)
    pq.write_table(table.replace_schema_metadata({FLUSH_KEY: tag}), file)


def _replace_with_file(run: Path) -> None:
    for p in run.iterdir():
        p.unlink()
    run.rmdir()
    run.write_text("not a run")


# name -> (damage done to a copy of a good run, file the message must name, words it says)
DAMAGE: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "meta binary garbage": (
        lambda r: (r / "meta.json").write_bytes(b"\xff\xfe\x00garbage\x80"), "meta.json",
        "not valid UTF-8 JSON",
    ),
    "meta invalid json": (
        lambda r: (r / "meta.json").write_text('{"format_version": 1,'), "meta.json",
        "not valid UTF-8 JSON",
    ),
    "meta empty": (lambda r: (r / "meta.json").write_bytes(b""), "meta.json", "is empty"),
    "meta missing": (lambda r: (r / "meta.json").unlink(), "run", "no meta.json"),
    "meta a list": (lambda r: (r / "meta.json").write_text("[1]"), "meta.json", "JSON list"),
    "meta newer version": (
        lambda r: _set_meta(r, format_version=99), "run", "pip install -U gradwatch"
    ),
    "meta version a string": (
        lambda r: _set_meta(r, format_version="1"), "meta.json", "format_version"
    ),
    "meta version true": (lambda r: _set_meta(r, format_version=True), "meta.json", "format_version"),
    "meta version zero": (lambda r: _set_meta(r, format_version=0), "meta.json", "format_version"),
    "meta layers not a list": (lambda r: _set_meta(r, layers="x"), "meta.json", "layer table"),
    "meta layers malformed": (lambda r: _set_meta(r, layers=[{"name": "a"}]), "run", "inconsistent"),
    "chunk garbage (not last)": (
        lambda r: (r / "layers-000000.parquet").write_bytes(b"\x00" * 64),
        "layers-000000.parquet",
        "later chunks exist",
    ),
    "chunk newer version": (
        lambda r: _retag(r / "scalars-000001.parquet", b'{"format": 7, "until": 20, "parts": {}}'),
        "scalars-000001.parquet",
        "pip install -U gradwatch",
    ),
    "chunk malformed tag": (
        lambda r: _retag(r / "layers-000001.parquet", b"\xff{"), "layers-000001.parquet",
        "malformed",
    ),
    "chunk without step": (
        lambda r: pq.write_table(
            pa.table({"layer": np.zeros(2, np.int32)}), r / "layers-000001.parquet"
        ),
        "layers-000001.parquet",
        "no 'step' column",
    ),
    "chunk text metric": (
        lambda r: pq.write_table(
            pa.table({"step": [0, 1], "layer": [0, 0], "grad_rms": ["a", "b"]}),
            r / "layers-000001.parquet",
        ),
        "layers-000001.parquet",
        "not numbers",
    ),
    "run dir is a file": (_replace_with_file, "run", "is a file"),
}  # fmt: skip


COMMANDS: dict[str, Callable[[Path, Path], list[str]]] = {
    "diagnose": lambda run, tmp: ["diagnose", str(run)],
    "diagnose json": lambda run, tmp: ["diagnose", str(run), "--format", "json"],
    "explain": lambda run, tmp: ["explain", str(run)],
    "fix": lambda run, tmp: ["fix", str(run)],
    "report": lambda run, tmp: ["report", str(run), "--out", str(tmp / "r.html")],
    "export": lambda run, tmp: ["export", "tensorboard", str(run), str(tmp / "tb")],
}


def _where(run: Path, names: str) -> str:
    return str(run) if names == "run" else str(run / names)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_load_raises_trace_error_naming_the_file(
    damage: str, fresh_run: Callable[[], Path]
) -> None:
    run = fresh_run()
    spoil, names, words = DAMAGE[damage]
    spoil(run)
    with pytest.raises(gw.TraceError) as info:
        gw.load(run)
    assert _where(run, names) in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(
    "damage", ["meta binary garbage", "meta missing", "meta newer version", "chunk garbage (not last)",
               "chunk text metric", "run dir is a file"],
)  # fmt: skip
def test_every_command_prints_one_line_and_exits_2(
    command: str,
    damage: str,
    fresh_run: Callable[[], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = fresh_run()
    spoil, names, _ = DAMAGE[damage]
    spoil(run)
    assert main(COMMANDS[command](run, tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"gradwatch {command.split(maxsplit=1)[0]}: error: ")
    assert _where(run, names) in err
    assert "Traceback" not in err


def test_unreadable_last_chunk_is_skipped_with_a_warning(fresh_run: Callable[[], Path]) -> None:
    """The last chunk cut short after it was written: the steps before it still load."""
    run = fresh_run()
    last = run / "layers-000002.parquet"
    last.write_bytes(last.read_bytes()[:40])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = gw.load(run)
    said = " ".join(str(w.message) for w in caught)
    assert "layers-000002.parquet" in said and "incomplete flush" in said
    # Its flush's other chunks go too, so scalars and layers end at the same step.
    assert list(trace.steps) == list(range(20))
    assert list(trace.scalar_steps) == list(range(20))


def test_old_runs_with_user_values_in_reserved_fields_still_load_and_report(
    fresh_run: Callable[[], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before user meta was checked, `meta={"model": "resnet50"}` replaced the model summary
    (report crashed with AttributeError): such values move under meta["user"]."""
    run = fresh_run()
    _set_meta(run, model="resnet50", config=["lr", 0.1], versions=3, status={"x": 1}, note="n")
    trace = gw.load(run)
    assert trace.meta["user"] == {
        "model": "resnet50", "config": ["lr", 0.1], "versions": 3, "status": {"x": 1},
    }  # fmt: skip
    assert "model" not in trace.meta and trace.config == {} and trace.meta["note"] == "n"
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    assert "resnet50" in (tmp_path / "r.html").read_text()
    for argv in (["diagnose", str(run)], ["fix", str(run)], ["explain", str(run)]):
        assert main(argv) == 0, capsys.readouterr().err
