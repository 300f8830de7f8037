"""Output that cannot be written: one line naming the path, exit code 2, no traceback."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gradwatch.cli.main import main


def _one_line(err: str, command: str, path: Path) -> None:
    assert err.count("\n") == 1, err
    assert err.startswith(f"gradwatch {command}: error: ") and str(path) in err, err
    assert "Traceback" not in err


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    file = tmp_path / "file"
    file.write_text("a regular file, so nothing can be created under it")
    return file


def test_report_out_under_a_file(
    fresh_run: Callable[[], Path], a_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = a_file / "r.html"
    assert main(["report", str(fresh_run()), "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "report", a_file)


def test_export_logdir_under_a_file(
    fresh_run: Callable[[], Path], a_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tensorboard")
    logdir = a_file / "tb"
    assert main(["export", "tensorboard", str(fresh_run()), str(logdir)]) == 2
    _one_line(capsys.readouterr().err, "export", logdir)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.ENOSPC])
def test_report_write_refused(
    code: int,
    fresh_run: Callable[[], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The write itself fails (a read-only mount, a directory we may not write: root ignores
    permission bits, so the refusal is simulated at the write call)."""
    from gradwatch.report import html

    def refuse(path: Path, text: str) -> None:
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(html, "_atomic_write_text", refuse)
    out = tmp_path / "r.html"
    assert main(["report", str(fresh_run()), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    _one_line(err, "report", out)
    assert os.strerror(code) in err and "writable --out" in err


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_export_write_refused(
    code: int,
    fresh_run: Callable[[], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("tensorboard")
    from gradwatch.report import tensorboard

    def refuse(logdir: Path, *args: Any, **kwargs: Any) -> None:
        raise OSError(code, os.strerror(code), str(logdir))

    monkeypatch.setattr(tensorboard, "_summary_writer", refuse)
    logdir = tmp_path / "tb"
    assert main(["export", "tensorboard", str(fresh_run()), str(logdir)]) == 2
    err = capsys.readouterr().err
    _one_line(err, "export", logdir)
    assert os.strerror(code) in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_report_into_a_read_only_directory(
    fresh_run: Callable[[], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(["report", str(fresh_run()), "--out", str(locked / "r.html")]) == 2
    _one_line(capsys.readouterr().err, "report", locked)
