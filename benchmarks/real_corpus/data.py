"""Data that ships with the environment: scikit-learn's digits and the stdlib's own bytes."""

from __future__ import annotations

import sysconfig
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F

Batch = tuple[torch.Tensor, torch.Tensor]


# ---------------------------------------------------------------------- data
@cache
def _digits_images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits as (N, 3, size, size) standardised images (bilinear upsampling of the 8x8)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    xt = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    xt = F.interpolate(xt, size=(size, size), mode="bilinear", align_corners=False)
    xt = (xt - xt.mean()) / xt.std()
    return xt.expand(-1, 3, -1, -1).contiguous(), torch.tensor(y, dtype=torch.long)


def digit_images(size: int, seed: int, batch: int = 64) -> Callable[[int], Batch]:
    """Random batches of digits images, (B, 3, size, size) and labels (B,)."""
    x, y = _digits_images(size)
    gen = torch.Generator().manual_seed(seed)

    def get(_: int) -> Batch:
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        return x[idx], y[idx]

    return get


def noisy_labels(
    batches: Callable[[int], Batch], share: float, classes: int, seed: int
) -> Callable[[int], Batch]:
    """``batches`` with each label replaced, at each draw with probability ``share``, by a
    uniformly random class: a loss floor no model can pass (at 40% of 10 classes, a
    cross-entropy of ~1.44 nats)."""
    gen = torch.Generator().manual_seed(seed + 1)

    def get(step: int) -> Batch:
        x, y = batches(step)
        redraw = torch.rand(y.shape, generator=gen) < share
        return x, torch.where(redraw, torch.randint(0, classes, y.shape, generator=gen), y)

    return get


def digit_vectors(seed: int, batch: int = 64) -> Callable[[int], Batch]:
    """Random batches of standardised 64-pixel digits vectors (B, 64) and labels (B,)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)

    def get(_: int) -> Batch:
        idx = torch.randint(0, len(xt), (batch,), generator=gen)
        return xt[idx], yt[idx]

    return get


def _stdlib_files() -> list[Path]:
    """The standard library's top-level ``.py`` files, sorted by name (deterministic)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    if not files:
        raise RuntimeError(f"no .py files under the stdlib path {root}; the corpus needs them")
    return files


@cache
def stdlib_bytes(limit: int = 1_000_000) -> torch.Tensor:
    """The first ``limit`` bytes of the concatenated stdlib sources, as int64 tokens 0..255."""
    chunks, total = [], 0
    for path in _stdlib_files():
        chunks.append(path.read_bytes())
        total += len(chunks[-1])
        if total >= limit:
            break
    data = b"".join(chunks)[:limit]
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


def byte_windows(length: int, seed: int, batch: int = 16) -> Callable[[int], Batch]:
    """Random stdlib windows: inputs (B, length) and next-byte targets (B, length)."""
    data = stdlib_bytes()
    gen = torch.Generator().manual_seed(seed)

    def get(_: int) -> Batch:
        start = torch.randint(0, len(data) - length - 1, (batch, 1), generator=gen)
        w = data[start + torch.arange(length + 1)]  # (B, length + 1)
        return w[:, :-1], w[:, 1:]

    return get


def bptt_batches(bptt: int, batch: int) -> Callable[[int], Batch]:
    """word_language_model's ``batchify`` + ``get_batch``: consecutive (bptt, B) chunks.

    The stream is cut into ``batch`` columns; step i reads rows ``i*bptt .. (i+1)*bptt`` of
    every column (wrapping around), so a carried hidden state continues the same text.
    """
    data = stdlib_bytes()
    n = len(data) // batch
    cols = data[: n * batch].view(batch, n).t().contiguous()  # (N, B)

    def get(i: int) -> Batch:
        s = (i * bptt) % (n - bptt - 1)
        return cols[s : s + bptt], cols[s + 1 : s + 1 + bptt]

    return get


@cache
def _two_files() -> tuple[torch.Tensor, torch.Tensor]:
    """Bytes of two stdlib files of different kinds: prose-heavy code and tables of code points."""
    root = Path(sysconfig.get_paths()["stdlib"])
    a, b = (root / "textwrap.py").read_bytes(), (root / "stringprep.py").read_bytes()
    return (
        torch.frombuffer(bytearray(a), dtype=torch.uint8).long(),
        torch.frombuffer(bytearray(b), dtype=torch.uint8).long(),
    )


def which_file_windows(length: int, seed: int, batch: int = 32) -> Callable[[int], Batch]:
    """Byte windows (B, length) labelled 0 or 1 by the stdlib file they come from."""
    files = _two_files()
    gen = torch.Generator().manual_seed(seed)

    def get(_: int) -> Batch:
        y = torch.randint(0, 2, (batch,), generator=gen)
        rows = []
        for label in y.tolist():
            src = files[label]
            s = int(torch.randint(0, len(src) - length, (1,), generator=gen))
            rows.append(src[s : s + length])
        return torch.stack(rows), y

    return get
