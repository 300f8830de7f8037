"""Long-memory sequence tasks from Hochreiter & Schmidhuber (1997) and Arjovsky et al. (2016)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .base import Task, generator, regression_baseline


@dataclass(frozen=True)
class AddingConfig:
    """The adding problem (Hochreiter & Schmidhuber 1997, experiment 4; as in Le et al. 2015)."""

    # Time steps between the inputs and the answer: the memory the net needs.
    seq_len: int = 50
    n_train: int = 4000
    n_test: int = 1000
    seed: int = 0


def adding(config: AddingConfig | None = None) -> Task:
    """Two channels per step: a value in U[0, 1] and a marker; the target is the sum of the
    two marked values, one marked in each half of the sequence.

    Predicting the mean 1 scores MSE = Var(u1 + u2) = 2/12 ~ 0.167: the trivial baseline.

    Example:
        >>> adding(AddingConfig(seq_len=10, n_train=4, n_test=2)).x_train.shape
        torch.Size([4, 10, 2])
    """
    config = config or AddingConfig()
    if config.seq_len < 2:
        raise ValueError(f"AddingConfig.seq_len={config.seq_len} must be >= 2")
    g = generator(config.seed)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        half = config.seq_len // 2
        values = torch.rand(n, config.seq_len, generator=g)
        first = torch.randint(0, half, (n,), generator=g)
        second = torch.randint(half, config.seq_len, (n,), generator=g)
        markers = torch.zeros(n, config.seq_len)
        rows = torch.arange(n)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        x = torch.stack([values, markers], dim=2)  # (n, T, 2)
        y = (values * markers).sum(dim=1, keepdim=True)  # (n, 1)
        return x, y

    x_train, y_train = sample(config.n_train)
    x_test, y_test = sample(config.n_test)
    return Task(
        "adding", x_train, y_train, x_test, y_test, "regression", "sequence", 2, 1,
        baseline=regression_baseline(y_train, y_test),
    )  # fmt: skip


@dataclass(frozen=True)
class CopyMemoryConfig:
    """Copy memory (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016), final-state readout."""

    # Symbols to remember, shown at the start.
    copy_len: int = 5
    # Blank steps between the symbols and the recall cue: the memory the net needs.
    delay: int = 20
    # Alphabet size: chance accuracy is 1/symbols.
    symbols: int = 8
    n_train: int = 4000
    n_test: int = 1000
    seed: int = 0


def copy_memory(config: CopyMemoryConfig | None = None) -> Task:
    """Remember ``copy_len`` symbols across ``delay`` blanks, then recall them all.

    Inputs are one-hot over symbols + blank + cue, (N, copy_len + delay + 1, symbols + 2).
    Unlike Arjovsky et al., who emit one symbol per output step, the model answers all
    ``copy_len`` symbols from its state at the cue (the lab's models read out the last step),
    so ``out_features = copy_len * symbols``.

    Example:
        >>> t = copy_memory(CopyMemoryConfig(copy_len=2, delay=3, n_train=4, n_test=2))
        >>> t.x_train.shape, t.y_train.shape
        (torch.Size([4, 6, 10]), torch.Size([4, 2]))
    """
    config = config or CopyMemoryConfig()
    g = generator(config.seed)
    blank, cue = config.symbols, config.symbols + 1
    length = config.copy_len + config.delay + 1

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, config.symbols, (n, config.copy_len), generator=g)
        tokens = torch.full((n, length), blank, dtype=torch.int64)
        tokens[:, : config.copy_len] = y
        tokens[:, -1] = cue
        return F.one_hot(tokens, config.symbols + 2).float(), y

    x_train, y_train = sample(config.n_train)
    x_test, y_test = sample(config.n_test)
    return Task(
        "copy_memory", x_train, y_train, x_test, y_test, "classification", "sequence",
        config.symbols + 2, config.copy_len * config.symbols, classes=config.symbols,
        baseline=1.0 / config.symbols,
    )  # fmt: skip


@dataclass(frozen=True)
class TemporalOrderConfig:
    """Temporal order (Hochreiter & Schmidhuber 1997, experiment 6a), positions scaled to T."""

    # Sequence length; the paper used 100-110, with X/Y at steps 10-20 and 50-60.
    seq_len: int = 50
    n_train: int = 4000
    n_test: int = 1000
    seed: int = 0


def temporal_order(config: TemporalOrderConfig | None = None) -> Task:
    """Classify the order of two relevant symbols (XX, XY, YX, YY) among distractors.

    Symbols are one-hot over {a, b, c, d, X, Y, B, E}: B starts, E ends, the relevant symbols
    appear at 10-20% and 50-60% of the sequence, the rest are distractors a-d.

    Example:
        >>> temporal_order(TemporalOrderConfig(seq_len=20, n_train=4, n_test=2)).x_train.shape
        torch.Size([4, 20, 8])
    """
    config = config or TemporalOrderConfig()
    T = config.seq_len
    if T < 10:
        raise ValueError(f"TemporalOrderConfig.seq_len={T} must be >= 10")
    g = generator(config.seed)
    x_sym, begin, end = 4, 6, 7  # X = 4, Y = 5

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.randint(0, 4, (n, T), generator=g)
        tokens[:, 0], tokens[:, -1] = begin, end
        t1 = torch.randint(max(1, T // 10), max(2, T // 5) + 1, (n,), generator=g)
        t2 = torch.randint(T // 2, max(T // 2 + 1, 3 * T // 5) + 1, (n,), generator=g)
        which = torch.randint(0, 2, (n, 2), generator=g)  # 0 = X, 1 = Y
        rows = torch.arange(n)
        tokens[rows, t1] = x_sym + which[:, 0]
        tokens[rows, t2] = x_sym + which[:, 1]
        y = which[:, 0] * 2 + which[:, 1]  # XX=0, XY=1, YX=2, YY=3
        return F.one_hot(tokens, 8).float(), y

    x_train, y_train = sample(config.n_train)
    x_test, y_test = sample(config.n_test)
    return Task(
        "temporal_order", x_train, y_train, x_test, y_test, "classification", "sequence", 8, 4,
        classes=4, baseline=0.25,
    )  # fmt: skip
