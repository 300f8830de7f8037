"""``findings.jsonl``: the findings seen while a run trained, one JSON object a line.

Each line is appended with one ``write`` of the whole line (``O_APPEND``) and made durable
with ``fsync``, so a reader (``gradwatch watch``, another process tailing the file) never
sees half a line: a line is either all there, with its newline, or not there. A short write
(the disk filled up mid-line) is cut back off the file. A full disk, a permission taken away:
the log stops with one warning naming the file, and training goes on, as the recorder does.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import warnings
from pathlib import Path
from typing import Any

#: The file name inside the run directory.
FINDINGS_FILE = "findings.jsonl"


class FindingsLog:
    """Appends finding records to ``<run_dir>/findings.jsonl``.

    Args:
        path: The file to append to.

    Attributes:
        stopped: Why writing stopped (the OSError, in words), or None while it goes on.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stopped: str | None = None

    def append(self, record: dict[str, Any]) -> None:
        """Append one record as one line; never raises for a write error (warns once)."""
        if self.stopped is not None:
            return
        data = (json.dumps(record, default=_json_default, allow_nan=True) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            self._stop(exc)
            return
        try:
            size = os.fstat(fd).st_size
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
                os.fsync(fd)
            except OSError:
                # Cut a partial line back off, so readers never meet half a record.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        except OSError as exc:
            self._stop(exc)
        finally:
            os.close(fd)

    def _stop(self, exc: OSError) -> None:
        self.stopped = f"{exc.strerror or exc}"
        warnings.warn(
            f"gradwatch stopped writing live findings to {str(self.path)!r}: {self.stopped}. "
            "Training goes on, and findings are still reported; free space or fix the "
            "directory to keep the file.",
            RuntimeWarning,
            stacklevel=4,
        )


def read_findings(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``findings.jsonl`` (a run directory or the file itself).

    A last line without its newline (being written right now, by a writer that does not
    append whole lines) is left out; a missing file is an empty list.
    """
    file = Path(path)
    if file.is_dir():
        file = file / FINDINGS_FILE
    try:
        text = file.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays in a finding's evidence
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
