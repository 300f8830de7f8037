"""The run directory: ``meta.json`` plus Parquet chunks, written crash-safely.

Layout::

    run_dir/
      meta.json                      model summary, layer table, config, versions
      layers-000000.parquet ...      one chunk per flush of each kind; columns and
      scalars-000000.parquet ...     metadata layout are defined in ``schema``
      recurrent-000000.parquet ...

Every file is written under a temporary name in the same directory and then renamed
(``os.replace`` is atomic on POSIX and Windows), so a reader sees a whole file or none: a
killed run loses at most its unflushed steps and never leaves a corrupt chunk.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import TraceError
from .schema import CHUNK_KINDS, FORMAT_VERSION, check_chunk, stamp_meta, trace_from_tables
from .trace import Trace

META_FILE = "meta.json"
_KINDS = "|".join(CHUNK_KINDS)
_CHUNK_RE = re.compile(rf"^({_KINDS})-(\d{{6}})\.parquet$")
# A file being written when a run was killed stays under this temporary name; never read.
_TMP_RE = re.compile(rf"^\.(meta\.json|({_KINDS})-\d{{6}}\.parquet)\.tmp$")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def is_run_dir(path: Path) -> bool:
    """True when ``path`` holds a gradwatch run (its ``meta.json`` or a chunk)."""
    if not path.is_dir():
        return False
    return (path / META_FILE).exists() or any(_CHUNK_RE.match(p.name) for p in path.iterdir())


class RunWriter:
    """Writes one run directory: atomic ``meta.json`` updates and numbered Parquet chunks."""

    def __init__(self, run_dir: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        path = Path(run_dir)
        if path.exists() and not path.is_dir():
            raise ValueError(
                f"Expected argument `run_dir` to be a directory but {str(path)!r} is a file. "
                "Pass a new or empty directory."
            )
        if is_run_dir(path):
            if not overwrite:
                raise FileExistsError(
                    f"Argument `run_dir`={str(path)!r} already holds a gradwatch run. Pass a new "
                    "directory, or `overwrite=True` to replace that run."
                )
            # Remove only what a run writes: other files the user keeps there stay.
            for p in path.iterdir():
                if p.name == META_FILE or _CHUNK_RE.match(p.name) or _TMP_RE.match(p.name):
                    p.unlink()
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._seq = dict.fromkeys(CHUNK_KINDS, 0)

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        data = json.dumps(
            stamp_meta(meta), indent=2, sort_keys=False, default=_json_default
        ).encode()
        _atomic_write_bytes(self.path / META_FILE, data)

    def write_chunk(self, kind: str, table: pa.Table) -> Path:
        """Write one chunk of ``kind`` ("layers", "scalars" or "recurrent") atomically."""
        if kind not in CHUNK_KINDS:
            raise ValueError(f"chunk kind must be one of {CHUNK_KINDS}, got {kind!r}")
        path = self.path / f"{kind}-{self._seq[kind]:06d}.parquet"
        self._seq[kind] += 1
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(table, tmp, compression="zstd")
        tmp.replace(path)
        return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def read_meta(path: Path) -> dict[str, Any]:
    meta_path = path / META_FILE
    if not meta_path.exists():
        raise TraceError(
            f"{str(path)!r} holds no gradwatch run (no {META_FILE}). Pass the directory given "
            "to `gw.watch(run_dir=...)`; a run writes meta.json at its first step."
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TraceError(f"cannot read {str(meta_path)!r}: {exc}") from exc
    if not isinstance(meta, dict):
        raise TraceError(
            f"{str(meta_path)!r} holds a JSON {type(meta).__name__}, not the object a gradwatch "
            "run writes; is it a gradwatch run?"
        )
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise TraceError(
            f"{str(meta_path)!r} has no integer `format_version`; is it a gradwatch run?"
        )
    if version > FORMAT_VERSION:
        raise TraceError(
            f"{str(path)!r} was written in trace format {version}, newer than this gradwatch "
            f"reads (format {FORMAT_VERSION}). Upgrade gradwatch: `pip install -U gradwatch`."
        )
    return dict(meta)


def load(run_dir: str | os.PathLike[str]) -> Trace:
    """Read a run directory into a :class:`Trace`, including from a run that was killed.

    Args:
        run_dir: A directory written by ``gw.watch(..., run_dir=...)``.

    Returns:
        The trace of every flushed step.

    Raises:
        TraceError: When the directory does not exist, holds no run, comes from a newer
            format, or has an unreadable chunk that is not the last one. An unreadable last
            chunk (a file damaged after it was written) is skipped with a warning.

    Example:
        >>> import gradwatch as gw
        >>> trace = gw.load("runs/exp1")  # doctest: +SKIP
    """
    path = Path(run_dir)
    if not path.exists():
        raise TraceError(f"run directory {str(path)!r} does not exist. Check the path.")
    if not path.is_dir():
        raise TraceError(f"{str(path)!r} is a file, not a run directory.")
    meta = read_meta(path)
    tables: dict[str, list[pa.Table]] = {k: [] for k in CHUNK_KINDS}
    for kind in CHUNK_KINDS:
        files = sorted(p for p in path.glob(f"{kind}-*.parquet") if _CHUNK_RE.match(p.name))
        for i, file in enumerate(files):
            try:
                tables[kind].append(pq.read_table(file))
            except (OSError, pa.ArrowException) as exc:
                if i == len(files) - 1:
                    warnings.warn(
                        f"skipping unreadable last chunk {str(file)!r} ({exc}); the trace holds "
                        "the steps before it.",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    continue
                raise TraceError(
                    f"chunk {str(file)!r} is unreadable ({exc}) and later chunks exist, so the "
                    "run directory was damaged after it was written."
                ) from exc
            check_chunk(kind, tables[kind][-1], file)
    try:
        return trace_from_tables(
            meta, tables["layers"], tables["scalars"], tables["recurrent"], run_dir=path
        )
    except (KeyError, ValueError, TypeError, IndexError, pa.ArrowException) as exc:
        # Chunks that each read fine but do not fit together (a missing column, a changed
        # type, a malformed layer table): say which run, not where inside pyarrow it broke.
        raise TraceError(
            f"run directory {str(path)!r} is inconsistent: its meta.json and chunks do not fit "
            f"together ({type(exc).__name__}: {exc}). Was it written by two different runs or "
            "edited by hand?"
        ) from exc
