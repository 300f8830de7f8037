"""The run directory: ``meta.json`` plus Parquet chunks, written crash-safely.

Layout::

    run_dir/
      meta.json                      model summary, layer table, config, versions
      layers-000000.parquet ...      one chunk per flush of each kind; columns and
      scalars-000000.parquet ...     metadata layout are defined in ``schema``
      recurrent-000000.parquet ...

Every file is written under a temporary name in the same directory and then renamed
(``os.replace`` is atomic on POSIX and Windows), so a reader sees a whole file or none: a
killed run loses at most its unflushed steps and never leaves a corrupt chunk. A write that
fails (a full disk) removes its temporary file before the error goes on.

Reading goes through :func:`load` only: it checks the directory and ``meta.json`` (one
:class:`TraceError` naming the file and what to do, for every reader), lists the chunks once
(a consistent snapshot of a run still being written: a flush whose chunks are not all there
yet is left out, so scalars and layer metrics end at the same step), and reads a layer
metric's column only when :meth:`Trace.matrix` first asks for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ._index import LayerIndex
from .errors import TraceError
from .schema import (
    CHUNK_KINDS,
    FORMAT_VERSION,
    KEY_COLUMNS,
    check_chunk,
    flush_tag,
    normalize_meta,
    stamp_meta,
    trace_from_tables,
)
from .trace import MeasuredRows, Trace

META_FILE = "meta.json"
_KINDS = "|".join(CHUNK_KINDS)
_CHUNK_RE = re.compile(rf"^({_KINDS})-(\d{{6}})\.parquet$")
# A file being written when a run was killed stays under this temporary name; never read.
_TMP_RE = re.compile(rf"^\.(meta\.json|({_KINDS})-\d{{6}}\.parquet)\.tmp$")


def _write_error(exc: BaseException, path: Path) -> OSError:
    """An OSError that names the file being written (pyarrow's own errors may not)."""
    errno = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or str(exc)
    return OSError(errno, f"cannot write {str(path)!r}: {reason}", str(path))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written temporary behind
        raise _write_error(exc, path) from exc


def is_run_dir(path: Path) -> bool:
    """True when ``path`` holds a gradwatch run (its ``meta.json`` or a chunk)."""
    if not path.is_dir():
        return False
    return (path / META_FILE).exists() or any(_CHUNK_RE.match(p.name) for p in path.iterdir())


class RunWriter:
    """Writes one run directory: atomic ``meta.json`` updates and numbered Parquet chunks.

    Raises:
        ValueError: When ``run_dir`` is a file.
        FileExistsError: When it holds a run and ``overwrite`` is False.
        OSError: When it cannot be created (naming it).
    """

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
        self._created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot create run directory {str(path)!r}: {exc.strerror or exc}. Pass a "
                "writable `run_dir`.",
                str(path),
            ) from exc
        self.path = path
        self._seq = dict.fromkeys(CHUNK_KINDS, 0)

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        """Write ``meta.json`` atomically (stamped with the format version).

        Raises:
            OSError: Naming the file, when it cannot be written; no temporary file remains.
        """
        data = json.dumps(
            stamp_meta(meta), indent=2, sort_keys=False, default=_json_default
        ).encode()
        _atomic_write_bytes(self.path / META_FILE, data)

    def write_chunk(self, kind: str, table: pa.Table) -> Path:
        """Write one chunk of ``kind`` ("layers", "scalars" or "recurrent") atomically.

        Raises:
            OSError: Naming the chunk, when it cannot be written; no temporary file remains
                and the chunk's number is used by the next chunk.
        """
        if kind not in CHUNK_KINDS:
            raise ValueError(f"chunk kind must be one of {CHUNK_KINDS}, got {kind!r}")
        path = self.path / f"{kind}-{self._seq[kind]:06d}.parquet"
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            pq.write_table(table, tmp, compression="zstd")
            tmp.replace(path)
        except (OSError, pa.ArrowException) as exc:
            tmp.unlink(missing_ok=True)
            raise _write_error(exc, path) from exc
        self._seq[kind] += 1
        return path

    def discard(self) -> None:
        """Remove what this writer wrote, and the directory if it created it and it is empty.

        For a recording that failed before it started (``gw.watch`` raised): nothing is left
        behind. Errors while cleaning up are ignored; the original error matters more.
        """
        with contextlib.suppress(OSError):
            for p in self.path.iterdir():
                if p.name == META_FILE or _CHUNK_RE.match(p.name) or _TMP_RE.match(p.name):
                    p.unlink(missing_ok=True)
            if self._created and not any(self.path.iterdir()):
                self.path.rmdir()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


# ---------------------------------------------------------------------- reading
_FIX = "Restore it, or record the run again."


def check_run_dir(run_dir: str | os.PathLike[str]) -> Path:
    """``run_dir`` as a Path, when it is an existing directory.

    Raises:
        TraceError: When it does not exist or is a file.
    """
    path = Path(run_dir)
    if not path.exists():
        raise TraceError(f"run directory {str(path)!r} does not exist. Check the path.")
    if not path.is_dir():
        raise TraceError(
            f"{str(path)!r} is a file, not a run directory. Pass the directory given to "
            "`gw.watch(run_dir=...)`."
        )
    return path


def read_meta(path: Path) -> dict[str, Any]:
    """The run's ``meta.json``, checked and with its reserved fields of the expected types.

    Raises:
        TraceError: Naming the file, when it is missing, unreadable, not JSON, not an
            object, without an integer ``format_version`` or a ``layers`` list, or newer
            than this gradwatch reads.
    """
    meta_path = path / META_FILE
    try:
        raw = meta_path.read_bytes()
    except FileNotFoundError:
        raise TraceError(
            f"{str(path)!r} holds no gradwatch run (no {META_FILE}). Pass the directory given "
            "to `gw.watch(run_dir=...)`; a run writes meta.json when it starts."
        ) from None
    except OSError as exc:
        raise TraceError(
            f"cannot read {str(meta_path)!r}: {exc.strerror or exc}. Check its permissions."
        ) from exc
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        what = "empty" if not raw.strip() else f"not valid UTF-8 JSON ({exc})"
        raise TraceError(f"{str(meta_path)!r} is {what}: the file is damaged. {_FIX}") from exc
    if not isinstance(meta, dict):
        raise TraceError(
            f"{str(meta_path)!r} holds a JSON {type(meta).__name__}, not the object a gradwatch "
            "run writes; is it a gradwatch run?"
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TraceError(
            f"{str(meta_path)!r} has no valid `format_version` (got {version!r}); is it a "
            f"gradwatch run? {_FIX}"
        )
    if version > FORMAT_VERSION:
        raise TraceError(
            f"{str(path)!r} was written in trace format {version}, newer than this gradwatch "
            f"reads (format {FORMAT_VERSION}). Upgrade gradwatch: `pip install -U gradwatch`."
        )
    if not isinstance(meta.get("layers", []), list):
        raise TraceError(
            f"{str(meta_path)!r} has a `layers` entry that is not a list: the layer table is "
            f"damaged. {_FIX}"
        )
    return normalize_meta(meta)


@dataclass(frozen=True)
class _Chunk:
    """One chunk file as listed and opened by :func:`load`."""

    file: Path
    kind: str
    columns: tuple[str, ...]
    rows: int
    flush: tuple[int, dict[str, int]] | None  # (until, chunks per kind) of its flush
    stamp: tuple[int, int, int]  # (inode, size, mtime): the file a lazy read must find

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """Read (some columns of) the chunk, checking it is still the file that was listed."""
        try:
            st = self.file.stat()
            if (st.st_ino, st.st_size, st.st_mtime_ns) != self.stamp:
                raise TraceError(
                    f"chunk {str(self.file)!r} changed after the run was loaded (the run "
                    "directory was overwritten). Load the run again."
                )
            return pq.read_table(self.file, columns=columns, memory_map=True)
        except FileNotFoundError as exc:
            raise TraceError(
                f"chunk {str(self.file)!r} was removed after the run was loaded (the run "
                "directory was overwritten or deleted). Load the run again."
            ) from exc
        except (OSError, pa.ArrowException) as exc:
            raise TraceError(f"chunk {str(self.file)!r} is unreadable ({exc}). {_FIX}") from exc


def _open_chunk(file: Path, kind: str) -> _Chunk:
    """List one chunk's columns, rows and flush tag from its footer (no data is read)."""
    st = file.stat()
    with pq.ParquetFile(file, memory_map=True) as pf:
        schema = pf.schema_arrow
        rows = pf.metadata.num_rows
    for col in KEY_COLUMNS[kind]:
        if col not in schema.names:
            raise TraceError(
                f"chunk {str(file)!r} has no {col!r} column ({kind} chunks need "
                f"{list(KEY_COLUMNS[kind])}); it was not written by gradwatch's recorder."
            )
    for name, typ in zip(schema.names, schema.types, strict=True):
        if name in KEY_COLUMNS[kind] or kind == "recurrent":
            continue
        if not (
            pa.types.is_floating(typ) or pa.types.is_integer(typ) or pa.types.is_boolean(typ)
        ) and not pa.types.is_null(typ):
            raise TraceError(
                f"run directory {str(file.parent)!r} is inconsistent: column {name!r} of chunk "
                f"{str(file)!r} holds {typ} values, not numbers. Remove that chunk."
            )
    return _Chunk(
        file, kind, tuple(schema.names), rows, flush_tag(schema.metadata, file),
        (st.st_ino, st.st_size, st.st_mtime_ns),
    )  # fmt: skip


def _list_chunks(path: Path) -> dict[str, list[_Chunk]]:
    """Every readable chunk, from one listing of the directory (a snapshot of a live run).

    An unreadable chunk is an error, except the last of its kind (a file damaged after it
    was written), which is skipped with a warning.
    """
    files: dict[str, list[Path]] = {k: [] for k in CHUNK_KINDS}
    for p in path.iterdir():
        m = _CHUNK_RE.match(p.name)
        if m:
            files[m.group(1)].append(p)
    chunks: dict[str, list[_Chunk]] = {k: [] for k in CHUNK_KINDS}
    for kind in CHUNK_KINDS:
        listed = sorted(files[kind])
        for i, file in enumerate(listed):
            try:
                chunks[kind].append(_open_chunk(file, kind))
            except (OSError, pa.ArrowException) as exc:
                if i == len(listed) - 1:
                    warnings.warn(
                        f"skipping unreadable last chunk {str(file)!r} ({exc}); the trace holds "
                        "the steps before it.",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    continue
                raise TraceError(
                    f"chunk {str(file)!r} is unreadable ({exc}) and later chunks exist, so the "
                    f"run directory was damaged after it was written. {_FIX}"
                ) from exc
    return chunks


def _whole_flushes(chunks: dict[str, list[_Chunk]], status: Any) -> dict[str, list[_Chunk]]:
    """Leave out the chunks of a flush that is not all there (still being written, or cut)."""
    expected: dict[int, dict[str, int]] = {}
    seen: dict[int, Counter[str]] = {}
    for kind_chunks in chunks.values():
        for c in kind_chunks:
            if c.flush is not None:
                expected[c.flush[0]] = c.flush[1]
                seen.setdefault(c.flush[0], Counter())[c.kind] += 1
    partial = {u for u, parts in expected.items() if any(seen[u][k] < n for k, n in parts.items())}
    if not partial:
        return chunks
    if status == "complete":
        warnings.warn(
            f"leaving out the incomplete flush(es) up to step {sorted(partial)} of a complete "
            "run: some of their chunks are missing.",
            RuntimeWarning,
            stacklevel=3,
        )
    return {
        kind: [c for c in cs if c.flush is None or c.flush[0] not in partial]
        for kind, cs in chunks.items()
    }


def _numbers(values: np.ndarray) -> np.ndarray:
    """Floats as stored (float32 from the recorder: half the memory in transit); integers
    and booleans as float64 (so NaN can mark missing)."""
    return values if values.dtype.kind == "f" else values.astype(np.float64)


def _metric_loader(
    index: LayerIndex, chunks: list[_Chunk], name: str
) -> Callable[[], MeasuredRows]:
    def load_matrix() -> MeasuredRows:
        def column(c: _Chunk) -> np.ndarray | None:
            if name not in c.columns:
                return None
            col = c.read([name]).column(name)
            return _numbers(col.to_numpy(zero_copy_only=False))

        return index.matrix(column(c) for c in chunks)

    return load_matrix


def _layer_index(chunks: list[_Chunk], n_layers: int) -> LayerIndex:
    """The row index of the layer chunks, from their ``step`` and ``layer`` columns only.

    The columns are copied chunk by chunk into arrays sized from the footers, so each
    chunk's Arrow table is let go before the next is read (10 million rows: 120 MB less).
    """
    total = sum(c.rows for c in chunks)
    step = np.empty(total, dtype=np.int64)
    layer = np.empty(total, dtype=np.int64)
    pos = 0
    for c in chunks:
        table = c.read(["step", "layer"])
        check_chunk("layers", table, c.file)
        n = table.num_rows
        step[pos : pos + n] = table.column("step").to_numpy()
        layer[pos : pos + n] = table.column("layer").to_numpy()
        pos += n
    return LayerIndex(step, layer, [c.rows for c in chunks], n_layers)


def load(run_dir: str | os.PathLike[str]) -> Trace:
    """Read a run directory into a :class:`Trace`, including from a run that was killed.

    The chunks are listed once, so a run still being written loads as one consistent
    snapshot; a layer metric's values are read from disk when :meth:`Trace.matrix` first
    asks for that metric.

    Args:
        run_dir: A directory written by ``gw.watch(..., run_dir=...)``.

    Returns:
        The trace of every flushed step.

    Raises:
        TraceError: Naming the file, when the directory does not exist, holds no run, its
            ``meta.json`` is damaged or from a newer format, or a chunk that is not the last
            one is unreadable. An unreadable last chunk (a file damaged after it was
            written) is skipped with a warning.

    Example:
        >>> import gradwatch as gw
        >>> trace = gw.load("runs/exp1")  # doctest: +SKIP
    """
    path = check_run_dir(run_dir)
    meta = read_meta(path)
    chunks = _whole_flushes(_list_chunks(path), meta.get("status"))
    try:
        index = _layer_index(chunks["layers"], len(meta.get("layers", [])))
        scalars = [c.read() for c in chunks["scalars"]]
        recurrent = [c.read() for c in chunks["recurrent"]]
        for kind, tables in (("scalars", scalars), ("recurrent", recurrent)):
            for c, table in zip(chunks[kind], tables, strict=True):
                check_chunk(kind, table, c.file)
        names = dict.fromkeys(
            n for c in chunks["layers"] for n in c.columns if n not in ("step", "layer")
        )
        loaders = {n: _metric_loader(index, chunks["layers"], n) for n in names}
        return trace_from_tables(
            meta, [], scalars, recurrent, run_dir=path, layer_columns=(index, loaders)
        )
    except (KeyError, ValueError, TypeError, IndexError, pa.ArrowException) as exc:
        # Chunks that each read fine but do not fit together (a missing column, a changed
        # type, a malformed layer table): say which run, not where inside pyarrow it broke.
        raise TraceError(
            f"run directory {str(path)!r} is inconsistent: its meta.json and chunks do not fit "
            f"together ({type(exc).__name__}: {exc}). Was it written by two different runs or "
            "edited by hand?"
        ) from exc
