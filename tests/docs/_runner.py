"""Run the code blocks of markdown pages the way a reader would, top to bottom.

A page's code blocks are found by their fences. What runs:

* ```` ```python ```` blocks: each page's blocks run in order in one namespace (like a doctest
  session), in a fresh temporary working directory per page;
* ```` ```bash ````/```` ```sh ```` blocks that call ``gradwatch`` or ``python``, run by
  ``bash -e -o pipefail`` in the page's directory, with ``gradwatch`` meaning
  ``sys.executable -m gradwatch`` and ``python``/``python3`` this interpreter;
* ```` ```console ```` blocks: their ``$ `` lines (and their ``\\`` continuations), the same way.

Other blocks (synopses in plain ```` ``` ````, TOML, output) are not run.

HTML comments on the lines just above a fence (hidden when rendered) say how to run it:

* ``<!-- not-run: <reason> -->``: skipped; the reason is required (say what it needs: a GPU,
  two processes, the network, minutes of CPU).
* ``<!-- slow: <reason> -->``: run only when slow tests run (``pytest -m slow``); a later
  block must not depend on it.
* ``<!-- fixtures: runs/exp1, model, optimizer -->``: made before the block runs, once per
  page: a path-like name (with a ``/``) is a small recorded run directory at that path
  (a 3-layer tanh MLP, 40 steps); any other name is a Python object put into the namespace
  when the block has not defined it (see :data:`PY_FIXTURES`), so a snippet may say
  ``model`` for "your model".
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTHON_LANGS = frozenset({"python", "py"})
SHELL_LANGS = frozenset({"bash", "sh", "shell"})
CONSOLE_LANGS = frozenset({"console", "shell-session"})
#: A shell command that runs gradwatch or Python (the commands these pages document).
_CALLS = re.compile(r"(^|[\s;&|(])(gradwatch|python3?)(\s|$)", re.M)
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<info>[^`\s]*)[^`]*$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<kind>[a-z-]+)\s*:(?P<value>.*?)-->\s*$")
MARKERS = frozenset({"not-run", "slow", "fixtures"})
SHELL_TIMEOUT_S = 300


class DocFormatError(ValueError):
    """A page's fences or markers are malformed (the message names the file and line)."""


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    path: Path
    index: int  # 0-based among the page's fenced blocks
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{_rel(self.path)}:{self.line}"

    @property
    def runnable(self) -> bool:
        """Whether this block is code the runner executes (python, or shell calling
        gradwatch/python)."""
        if self.lang in PYTHON_LANGS:
            return True
        if self.lang in SHELL_LANGS:
            return bool(_CALLS.search(self.code))
        if self.lang in CONSOLE_LANGS:
            return bool(_CALLS.search(self.shell_script()))
        return False

    @property
    def not_run(self) -> str | None:
        return self.markers.get("not-run")

    @property
    def slow(self) -> str | None:
        return self.markers.get("slow")

    @property
    def fixtures(self) -> list[str]:
        raw = self.markers.get("fixtures", "")
        return [n for n in re.split(r"[,\s]+", raw) if n]

    def shell_script(self) -> str:
        """The commands of a shell or console block, as one bash script."""
        if self.lang not in CONSOLE_LANGS:
            return self.code
        lines, continuing = [], False
        for line in self.code.splitlines():
            if line.startswith("$ ") or continuing:
                cmd = line[2:] if line.startswith("$ ") and not continuing else line
                lines.append(cmd)
                continuing = cmd.rstrip().endswith("\\")
        return "\n".join(lines)


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def parse_blocks(path: Path, text: str | None = None) -> list[Block]:
    """Every fenced code block of the page, with the markers on the lines just above it.

    Raises:
        DocFormatError: an unclosed fence, an unknown marker, or a marker without a reason.
    """
    text = path.read_text() if text is None else text
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m.group("fence"), m.group("indent")
        end = i + 1
        while end < len(lines) and not (
            lines[end].strip().startswith(fence[0] * len(fence))
            and lines[end].strip().strip(fence[0]) == ""
        ):
            end += 1
        if end == len(lines):
            raise DocFormatError(f"{_rel(path)}:{i + 1}: code fence {fence!r} is never closed")
        body = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[i + 1 : end]]
        blocks.append(
            Block(
                path=path,
                index=len(blocks),
                line=i + 1,
                lang=m.group("info").lower(),
                code=textwrap.dedent("\n".join(body)) + "\n",
                markers=_markers_above(path, lines, i),
            )
        )
        i = end + 1
    return blocks


def _markers_above(path: Path, lines: list[str], fence_line: int) -> dict[str, str]:
    """The ``<!-- kind: value -->`` comments on the lines directly above a fence."""
    found: dict[str, str] = {}
    j = fence_line - 1
    while j >= 0 and (m := _MARKER.match(lines[j])):
        kind, value = m.group("kind"), m.group("value").strip()
        where = f"{_rel(path)}:{j + 1}"
        if kind not in MARKERS:
            raise DocFormatError(
                f"{where}: unknown code-block marker {kind!r}; use one of {sorted(MARKERS)}"
            )
        if not value:
            raise DocFormatError(
                f"{where}: `<!-- {kind}: -->` needs a reason (or, for fixtures, names), e.g. "
                f"`<!-- {kind}: needs a GPU -->`"
            )
        found[kind] = value
        j -= 1
    return found


# ----------------------------------------------------------------------------- fixtures
def make_run(run_dir: Path, seed: int = 0) -> None:
    """A small recorded run at ``run_dir``: a 3-layer tanh MLP on fixed random data, 40 steps."""
    import torch
    from torch import nn

    import gradwatch as gw

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = _data(seed)
    with gw.watch(model, opt, run_dir=str(run_dir)) as w:
        for step in range(40):
            xb, yb = x[step % 4 * 32 : step % 4 * 32 + 32], y[step % 4 * 32 : step % 4 * 32 + 32]
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)


def _data(seed: int) -> tuple[Any, Any]:
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # 3 classes a small net learns
    return x, y


def _model(ns: dict[str, Any]) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )


def _batches(ns: dict[str, Any]) -> list[tuple[Any, Any]]:
    x, y = _data(0)
    return [(x[i : i + 32], y[i : i + 32]) for i in range(0, 128, 32)]


def _optimizer(ns: dict[str, Any]) -> Any:
    import torch

    return torch.optim.Adam(_need(ns, "model").parameters(), lr=1e-2)


def _trace_of(run: str) -> Callable[[dict[str, Any]], Any]:
    def make(ns: dict[str, Any]) -> Any:
        import gradwatch as gw

        if not Path(run).exists():
            make_run(Path(run), seed=len(run))
        return gw.load(run)

    return make


def _findings_of(trace_name: str) -> Callable[[dict[str, Any]], Any]:
    def make(ns: dict[str, Any]) -> Any:
        import gradwatch as gw

        return gw.diagnose(_need(ns, trace_name))

    return make


#: Python names a block may ask for with ``<!-- fixtures: ... -->``: name -> factory(namespace).
PY_FIXTURES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "model": _model,
    "optimizer": _optimizer,
    "opt": _optimizer,
    "loader": _batches,
    "batches": _batches,
    "batch": lambda ns: _batches(ns)[0],
    "loss_fn": lambda ns: __import__("torch").nn.CrossEntropyLoss(),
    "trace": _trace_of("runs/exp1"),
    "t1": _trace_of("runs/a"),
    "t2": _trace_of("runs/b"),
    "f1": _findings_of("t1"),
    "f2": _findings_of("t2"),
}


def _need(ns: dict[str, Any], name: str) -> Any:
    if name not in ns:
        ns[name] = PY_FIXTURES[name](ns)
    return ns[name]


# ----------------------------------------------------------------------------- running
class BlockFailedError(AssertionError):
    """A documented block did not run; the message names the page, line and the error."""


class Page:
    """One page being run: its directory, its Python namespace, what has run so far."""

    def __init__(self, path: Path, text: str | None = None) -> None:
        self.path = path
        self.blocks = parse_blocks(path, text)
        self.dir = Path(tempfile.mkdtemp(prefix="gw-docs-"))
        self.ns: dict[str, Any] = {"__name__": "__main__"}
        self.done: dict[int, str | None] = {}  # index -> None (ran) or the failure message
        self._bin: Path | None = None

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._bin is not None:
            shutil.rmtree(self._bin, ignore_errors=True)

    def run_through(self, index: int) -> None:
        """Run block ``index``, first running (once) every earlier block that runs by default.

        Raises:
            BlockFailedError: this block, or an earlier one it depends on, failed.
        """
        for block in self.blocks[:index]:
            if block.runnable and not block.not_run and not block.slow:
                self._run_once(block)
                if self.done[block.index] is not None:
                    raise BlockFailedError(
                        f"{self.blocks[index].where}: an earlier block it depends on, "
                        f"{block.where}, failed:\n{self.done[block.index]}"
                    )
        block = self.blocks[index]
        if not block.runnable:
            raise ValueError(f"{block.where} is a {block.lang or 'plain'} block, not run code")
        self._run_once(block)
        if self.done[block.index] is not None:
            raise BlockFailedError(f"{block.where}:\n{self.done[block.index]}")

    def _run_once(self, block: Block) -> None:
        if block.index in self.done:
            return
        try:
            self._fixtures(block)
            if block.lang in PYTHON_LANGS:
                self._python(block)
            else:
                self._shell(block)
        except BaseException as exc:  # a reader's error of any kind is the result
            if isinstance(exc, KeyboardInterrupt):
                raise
            self.done[block.index] = _describe(block, exc)
        else:
            self.done[block.index] = None

    def _fixtures(self, block: Block) -> None:
        unknown = [n for n in block.fixtures if "/" not in n and n not in PY_FIXTURES]
        if unknown:
            raise DocFormatError(
                f"{block.where}: unknown fixture(s) {unknown}; known: {sorted(PY_FIXTURES)} or a "
                "run directory path such as runs/exp1"
            )
        with _chdir(self.dir):
            for name in block.fixtures:
                if "/" in name:
                    if not Path(name).exists():
                        make_run(Path(name), seed=len(name))
                elif block.lang in PYTHON_LANGS:
                    _need(self.ns, name)

    def _python(self, block: Block) -> None:
        code = compile(block.code, f"{block.where} (```{block.lang} block)", "exec")
        with _chdir(self.dir):
            try:
                exec(code, self.ns)  # running the documentation is the point
            finally:
                if "matplotlib.pyplot" in sys.modules:
                    sys.modules["matplotlib.pyplot"].close("all")

    def _shell(self, block: Block) -> None:
        env = dict(os.environ)
        env["PATH"] = f"{self._shims()}{os.pathsep}{env.get('PATH', '')}"
        env.setdefault("MPLBACKEND", "Agg")
        src = str(ROOT / "src")
        if src not in env.get("PYTHONPATH", "").split(os.pathsep):  # this checkout, not another
            env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        proc = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block.shell_script()],
            cwd=self.dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=SHELL_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            out = (proc.stdout + proc.stderr)[-3000:]
            raise RuntimeError(
                f"exit status {proc.returncode}:\n{block.shell_script()}\n---\n{out}"
            )

    def _shims(self) -> Path:
        """A directory of ``gradwatch``, ``python`` and ``python3`` that run this interpreter."""
        if self._bin is None:
            self._bin = self.dir.parent / f"{self.dir.name}-bin"
            self._bin.mkdir()
            for name, args in (
                ("gradwatch", f'"{sys.executable}" -m gradwatch'),
                ("python", f'"{sys.executable}"'),
                ("python3", f'"{sys.executable}"'),
            ):
                shim = self._bin / name
                shim.write_text(f'#!/bin/sh\nexec {args} "$@"\n')
                shim.chmod(0o755)
        return self._bin


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    """``contextlib.chdir`` (Python 3.11+) for 3.10."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _describe(block: Block, exc: BaseException) -> str:
    """The error as a reader needs it: the block's own frames, not the runner's."""
    if isinstance(exc, RuntimeError | DocFormatError) and block.lang not in PYTHON_LANGS:
        return str(exc)
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    keep = [t for t in tb if __file__ not in t]
    return "".join(keep)[-4000:]
