"""Reading markdown pages: tables, generated blocks, headings and links, outside code."""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ._runner import ROOT

BEGIN_RE = re.compile(r"^<!-- BEGIN GENERATED: (?P<script>[^\s#]+)(?:#(?P<name>[\w.-]+))? -->$")
END = "<!-- END GENERATED -->"
_FENCE = re.compile(r"^\s*(```+|~~~+)")
#: A cell that is a measured number: 0.087, 6.9e-17, 1.5e9, +0.20%, 4.2 s, 1.07x ...
_NUMBER = re.compile(
    r"^\*{0,2}[~≈+\-−]?\d[\d,]*(\.\d+)?([eE][+-]?\d+)?\*{0,2}\s*"
    r"(%|x|×|s|ms|us|µs|KB|MB|GB|KiB|MiB|GiB)?(\s*±\s*[\d.eE+-]+)?$"
)


@dataclass(frozen=True)
class Table:
    """A markdown table: where it starts, its header cells and its body rows."""

    line: int  # 1-based line of the header row
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    @property
    def measured(self) -> bool:
        """Whether the table reports measured numbers: some body cell is a number with a
        fraction or an exponent (a count or an id alone does not make a table measured)."""
        return any(_NUMBER.match(c) and re.search(r"\d[.eE]", c) for row in self.rows for c in row)


@dataclass(frozen=True)
class Generated:
    """A ``<!-- BEGIN GENERATED: script[#name] -->`` ... ``<!-- END GENERATED -->`` block."""

    script: str
    name: str
    begin: int  # 1-based lines of the two markers
    end: int
    lines: tuple[str, ...]  # the lines between them


def outside_code(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) of every line not inside a fenced code block."""
    out, fence = [], ""
    for i, line in enumerate(text.splitlines(), start=1):
        m = _FENCE.match(line)
        if m and (not fence or m.group(1).startswith(fence)):
            fence = "" if fence else m.group(1)
            continue
        if not fence:
            out.append((i, line))
    return out


def split_row(line: str) -> tuple[str, ...]:
    """The cells of a table row (``\\|`` is a pipe inside a cell)."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return tuple(c.strip() for c in re.split(r"(?<!\\)\|", body))


def tables(text: str) -> list[Table]:
    """Every markdown table outside code blocks."""
    lines = outside_code(text)
    found: list[Table] = []
    i = 0
    while i + 1 < len(lines):
        (n, head), (n2, sep) = lines[i], lines[i + 1]
        if (
            head.lstrip().startswith("|")
            and n2 == n + 1
            and re.fullmatch(r"\s*\|?(\s*:?-{3,}:?\s*\|)+\s*:?-*:?\s*\|?\s*", sep)
        ):
            rows = []
            j = i + 2
            while j < len(lines) and lines[j][1].lstrip().startswith("|"):
                rows.append(split_row(lines[j][1]))
                j += 1
            found.append(Table(n, split_row(head), tuple(rows)))
            i = j
        else:
            i += 1
    return found


def generated_blocks(path: Path) -> list[Generated]:
    """The page's generated blocks; ``ValueError`` for a BEGIN without its END or nested."""
    lines = path.read_text().splitlines()
    out: list[Generated] = []
    open_at: tuple[int, re.Match[str]] | None = None
    for i, line in enumerate(lines, start=1):
        m = BEGIN_RE.match(line.strip())
        if m:
            if open_at is not None:
                raise ValueError(f"{path.name}:{i}: generated block opened inside another")
            open_at = (i, m)
        elif line.strip() == END:
            if open_at is None:
                raise ValueError(f"{path.name}:{i}: {END} without a BEGIN")
            start, bm = open_at
            out.append(
                Generated(
                    bm.group("script"),
                    bm.group("name") or "",
                    start,
                    i,
                    tuple(lines[start : i - 1]),
                )
            )
            open_at = None
    if open_at is not None:
        raise ValueError(f"{path.name}:{open_at[0]}: generated block is never closed")
    return out


def load_script(script: str) -> ModuleType:
    """Import a generating script by its repository path (its own folder on sys.path)."""
    path = ROOT / script
    name = "docs_generator_" + re.sub(r"\W", "_", script)
    if name in sys.modules:
        return sys.modules[name]
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, script
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def anchors(text: str) -> set[str]:
    """The heading anchors GitHub gives a page (lower case, punctuation dropped, spaces to
    hyphens, ``-1``, ``-2`` ... for repeats)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in outside_code(text):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))  # [text](link) -> text
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\((?P<target><[^>]+>|[^)\s]+)(?:\s+\"[^\"]*\")?\)"
)


def links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every inline link or image outside code blocks and code spans."""
    out = []
    for n, line in outside_code(text):
        prose = re.sub(r"`[^`]*`", "", line)
        for m in _LINK.finditer(prose):
            out.append((n, m.group("target").strip("<>")))
    return out
