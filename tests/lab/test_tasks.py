"""Lab tasks: shapes, targets recomputed by hand, baselines measured, determinism by seed."""

from __future__ import annotations

import pytest
import torch

from gradwatch.lab.tasks import (
    TASKS,
    AddingConfig,
    CopyMemoryConfig,
    DigitsConfig,
    SpiralsConfig,
    TeacherStudentConfig,
    TemporalOrderConfig,
    make_task,
)

SMALL = {
    "digits": DigitsConfig(),
    "digits_image": DigitsConfig(),
    "sequential_digits": DigitsConfig(),
    "spirals": SpiralsConfig(n_train=50, n_test=20),
    "teacher_student": TeacherStudentConfig(n_train=50, n_test=20),
    "adding": AddingConfig(seq_len=12, n_train=50, n_test=20),
    "copy_memory": CopyMemoryConfig(copy_len=3, delay=4, n_train=50, n_test=20),
    "temporal_order": TemporalOrderConfig(seq_len=20, n_train=50, n_test=20),
}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_shapes_and_loss(name: str) -> None:
    """Each task's tensors agree with its declared layout and its loss is a finite scalar."""
    task = make_task(name, SMALL[name])
    assert len(task.x_train) == len(task.y_train) and len(task.x_test) == len(task.y_test)
    rank = {"flat": 2, "sequence": 3, "image": 4}[task.input]
    assert task.x_train.ndim == rank and task.x_train.dtype == torch.float32
    assert task.x_train.shape[1 if task.input != "sequence" else 2] == task.in_features
    out = torch.zeros(len(task.x_test), task.out_features)
    assert torch.isfinite(task.loss(out, task.y_test))


@pytest.mark.parametrize("name", sorted(TASKS))
def test_tasks_are_deterministic_by_seed(name: str) -> None:
    """One seed gives identical data; another seed gives different data."""
    import dataclasses

    cfg = SMALL[name]
    a, b = make_task(name, cfg), make_task(name, cfg)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    c = make_task(name, dataclasses.replace(cfg, seed=1))
    assert not torch.equal(a.x_train, c.x_train)


def test_adding_trivial_mse_is_one_sixth() -> None:
    """Predicting 1 on the adding problem scores MSE ~ 2/12 = 0.167 (measured, 20k samples)."""
    task = make_task("adding", AddingConfig(seq_len=20, n_train=100, n_test=20000))
    mse = task.metric(torch.ones(len(task.y_test), 1), task.y_test)
    assert abs(mse - 1 / 6) < 0.006
    assert abs(task.baseline - 1 / 6) < 0.006


def test_adding_target_is_sum_of_marked_values() -> None:
    """Targets equal the naive loop's sum of the two marked values, one per half."""
    task = make_task("adding", AddingConfig(seq_len=10, n_train=30, n_test=1))
    for x, y in zip(task.x_train, task.y_train, strict=True):
        marked = [t for t in range(10) if x[t, 1] == 1.0]
        assert len(marked) == 2 and marked[0] < 5 <= marked[1]
        assert torch.isclose(y[0], x[marked[0], 0] + x[marked[1], 0])


def test_digits_split_and_standardisation() -> None:
    """The split covers all 1,797 images once; train pixels have mean 0 and std 1 (or are 0)."""
    task = make_task("digits", DigitsConfig(test_fraction=0.25))
    assert len(task.x_train) + len(task.x_test) == 1797
    assert len(task.x_test) == round(1797 * 0.25)
    mean, std = task.x_train.double().mean(0), task.x_train.double().std(0)
    varying = std > 0
    assert torch.allclose(mean, torch.zeros(64, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(std[varying], torch.ones_like(std[varying]), atol=1e-5)
    rows = {tuple(r.tolist()) for r in task.x_train}
    assert sum(tuple(r.tolist()) in rows for r in task.x_test) < 20  # (sklearn has duplicates)


def test_sequential_digits_rows_are_time_steps() -> None:
    """Sequential digits step t is row t of the flat image; labels agree."""
    flat, seq = make_task("digits"), make_task("sequential_digits")
    assert seq.x_train.shape[1:] == (8, 8)
    assert torch.equal(seq.x_train[:, 3], flat.x_train[:, 24:32])
    assert torch.equal(seq.y_train, flat.y_train)


def test_copy_memory_targets_are_first_symbols() -> None:
    """The targets are the one-hot symbols shown first; the last step is the recall cue."""
    cfg = CopyMemoryConfig(copy_len=3, delay=4, symbols=5, n_train=20, n_test=5)
    task = make_task("copy_memory", cfg)
    tokens = task.x_train.argmax(-1)
    assert torch.equal(tokens[:, :3], task.y_train)
    assert (tokens[:, 3:-1] == 5).all() and (tokens[:, -1] == 6).all()
    assert task.out_features == 15 and task.classes == 5


def test_copy_memory_loss_is_mean_over_answers() -> None:
    """Multi-answer cross-entropy is the mean of each answer's cross-entropy (naive loop)."""
    task = make_task("copy_memory", CopyMemoryConfig(copy_len=3, symbols=4, n_train=8, n_test=2))
    logits, y = torch.randn(8, 12), task.y_train
    naive = (
        sum(
            -torch.log_softmax(logits[i, 4 * k : 4 * k + 4], 0)[y[i, k]]
            for i in range(8)
            for k in range(3)
        )
        / 24
    )
    assert torch.isclose(task.loss(logits, y), naive)


def test_temporal_order_label_matches_relevant_symbols() -> None:
    """The class encodes which of X/Y appear, in order, at the two relevant positions."""
    task = make_task("temporal_order", TemporalOrderConfig(seq_len=30, n_train=40, n_test=2))
    for x, y in zip(task.x_train, task.y_train, strict=True):
        tokens = x.argmax(-1).tolist()
        relevant = [s for s in tokens if s in (4, 5)]
        assert len(relevant) == 2 and tokens[0] == 6 and tokens[-1] == 7
        assert int(y) == (relevant[0] - 4) * 2 + (relevant[1] - 4)


def test_teacher_student_targets_unit_variance() -> None:
    """Teacher outputs are standardised, so predicting the mean scores MSE ~1."""
    task = make_task("teacher_student", TeacherStudentConfig(n_train=3000, n_test=3000))
    y = torch.cat([task.y_train, task.y_test])
    assert abs(float(y.std()) - 1) < 1e-4
    assert 0.9 < task.baseline < 1.1


def test_unknown_task_names_the_choices() -> None:
    """An unknown task name is an error listing the known ones."""
    with pytest.raises(ValueError, match="adding"):
        make_task("mnist")
