"""A reader that closes the pipe early (``gradwatch explain RUN | head -1``) ends the command
quietly: no BrokenPipeError traceback, exit status 0."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

COMMANDS: dict[str, list[str]] = {
    "explain": ["explain", "{run}"],
    "diagnose json": ["diagnose", "{run}", "--format", "json"],
    "diagnose": ["diagnose", "{run}"],
    "fix": ["fix", "{run}"],
    "lab configs": ["lab", "configs"],
    "lab study list": ["lab", "study", "--list"],
}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "MPLBACKEND": "Agg"}


def _closed_early(argvs: list[list[str]], cwd: Path) -> list[tuple[int, str]]:
    """Run gradwatch commands (side by side) with a stdout pipe whose reading end is already
    closed; each one's exit status and stderr."""
    procs = []
    for argv in argvs:
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the first write: every write is EPIPE
        argv_full = [sys.executable, "-m", "gradwatch", *argv]
        proc = subprocess.Popen(
            argv_full, stdout=write, stderr=subprocess.PIPE, cwd=cwd, env=_env(), text=True
        )
        procs.append(proc)
        os.close(write)
    return [(p.wait(timeout=300), p.communicate()[1]) for p in procs]


def _head_1(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """``gradwatch ... | head -1`` as a shell runs it; the pipeline's exit statuses."""
    cmd = " ".join([sys.executable, "-m", "gradwatch", *argv])
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {cmd} 2>err.txt | head -c 1; echo; echo $?"],
        capture_output=True, cwd=cwd, env=_env(), text=True, timeout=120, check=False,
    )  # fmt: skip
    return int(done.stdout.split()[-1]), done.stdout, (cwd / "err.txt").read_text()


def _check_quiet(names: list[str], run: Path, cwd: Path) -> None:
    argvs = [[a.format(run=run) for a in COMMANDS[name]] for name in names]
    for name, (code, err) in zip(names, _closed_early(argvs, cwd), strict=True):
        assert "Traceback" not in err and "BrokenPipeError" not in err, (name, err)
        assert (code, err) == (0, ""), name


def test_closed_pipe_is_quiet(fresh_run: Callable[[], Path], tmp_path: Path) -> None:
    """Our own print (explain), rich's console (diagnose), and JSON (diagnose --format json)."""
    _check_quiet(["explain", "diagnose", "diagnose json"], fresh_run(), tmp_path)


@pytest.mark.slow
def test_closed_pipe_is_quiet_for_every_command(
    fresh_run: Callable[[], Path], tmp_path: Path
) -> None:
    _check_quiet(list(COMMANDS), fresh_run(), tmp_path)


@pytest.mark.slow
def test_head_closes_after_the_first_byte(fresh_run: Callable[[], Path], tmp_path: Path) -> None:
    code, _, err = _head_1(["explain", str(fresh_run())], tmp_path)
    assert code == 0 and "Traceback" not in err, err


@pytest.mark.slow
def test_demo_into_a_closed_pipe(tmp_path: Path) -> None:
    [(code, err)] = _closed_early([["demo", "--depth", "3", "--steps", "5", "--no-report",
                                    "--out", str(tmp_path / "d")]], tmp_path)  # fmt: skip
    assert code == 0 and "Traceback" not in err, err
