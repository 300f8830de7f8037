"""Under torch.distributed (gloo, 2 processes on CPU) rank 0 writes the statistics of the job.

One spawn runs every scenario (DDP, FSDP2, a recurrent net under DDP); each test compares what
rank 0 wrote with one process that trains the same model on the full batch. DDP and FSDP2
average the ranks' gradients, so the one-process loss is the mean of the two half-batch
losses, and every statistic (activation moments, saturated and dead fractions, output
gradients, gradient, weight and update norms, the logged loss) must match.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import gradwatch as gw

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="torch.distributed with gloo is not available in this build",
)

STEPS = 5
CLIP = 0.05  # below the gradient norms of _mlp: every step is clipped
# Steps 0, 2 and 4 are sampled; windows of 2 steps: three flushes (the last one at close).
SETTINGS: dict[str, Any] = {"sample_every": 2, "dense_steps": 0, "flush_every": 2}
METRICS = (
    "grad_norm",
    "grad_rms",
    "grad_max",
    "weight_norm",
    "update_ratio",
    "nonfinite",
    "act_mean",
    "act_std",
    "act_saturated",
    "act_dead",
    "out_grad_norm",
    "act_between_inputs",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    # Tanh (saturation), ReLU (dead units), and 3 outputs: FSDP2 shards them unevenly (2 + 1).
    return nn.Sequential(
        nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )


def _mlp_batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [3 * torch.randn(8, 4, generator=gen) for _ in range(STEPS)]


class _Rnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.RNN(3, 6, batch_first=True)
        self.head = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def _rnn_batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return [torch.randn(8, 7, 3, generator=gen) for _ in range(STEPS)]


def _loss(out: torch.Tensor) -> torch.Tensor:
    return out.pow(2).mean()


def _train(
    model: nn.Module,
    batches: list[torch.Tensor],
    run_dir: str,
    part: Callable[[Any], Any],
    *,
    clip: float | None = None,
) -> gw.Watch:
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    with gw.watch(model, opt, run_dir=run_dir, **SETTINGS) as w:
        for step, x in enumerate(batches):
            opt.zero_grad()
            loss = _loss(model(part(x)))
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            w.log(loss=loss, reduce="mean")
            w.log(seen=part(x).shape[0], reduce="sum")
            w.log(local_loss=loss)
            if step == 2 and dist.get_rank() == 0:
                # Only rank 0 reads the trace mid-run: no collective, so no deadlock.
                assert list(w.trace.steps) == [0, 1]
    return w


def _budget_run(rank: int, half: Callable[[Any], Any], run_dir: str) -> dict[str, Any]:
    """DDP under the overhead budget, with rank 1's sampled steps measured 3e4x costlier than
    rank 0's: left alone, rank 0 would sample every 2nd step, rank 1 hardly any (plain steps
    and flushes cost next to nothing on both, and a sampled step fits the budget at some
    spacing: every step is recorded). Returns what each rank did."""
    from gradwatch.recording.schedule import SAMPLED, Schedule

    sampled: list[int] = []
    begin, charge, charge_flush = Schedule.begin, Schedule.charge, Schedule.charge_flush
    factor = 30.0 if rank == 1 else 1e-3

    def logged_begin(self: Schedule, step: int) -> tuple[bool, bool]:
        recorded, is_sampled = begin(self, step)
        if is_sampled:
            sampled.append(step)
        return recorded, is_sampled

    def scaled(self: Schedule, seconds: float) -> None:
        charge(self, (factor if self._kind == SAMPLED else 1e-3) * seconds)

    def scaled_flush(self: Schedule, seconds: float) -> None:
        charge_flush(self, 1e-3 * seconds)

    model = nn.parallel.DistributedDataParallel(_mlp())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    decay = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.1)  # (every batch)
    batches = [x for _ in range(8) for x in _mlp_batches()]  # 40 steps
    with pytest.MonkeyPatch.context() as mp_:
        mp_.setattr(Schedule, "begin", logged_begin)
        mp_.setattr(Schedule, "charge", scaled)
        mp_.setattr(Schedule, "charge_flush", scaled_flush)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            settings = {"sample_every": 2, "dense_steps": 4, "flush_every": 4}
            with gw.watch(model, opt, run_dir=run_dir, overhead=0.03, **settings) as w:
                for x in batches:
                    opt.zero_grad()
                    _loss(model(half(x))).backward()
                    opt.step()
                    decay.step()
    return {
        f"sampled_{rank}": sampled,
        "spacing": w._schedule.sample_spacing,
        "warnings": [str(c.message) for c in caught if "gradwatch" in str(c.message)],
    }


def _window_run(rank: int, half: Callable[[Any], Any], run_dir: str) -> dict[str, Any]:
    """DDP with the flush window left to the recorder (first window 4 steps): rank 1 asks
    for a window twice as long at each flush (up to 16 steps), rank 0 for the same one."""
    from gradwatch.recording.schedule import Schedule

    # (the module: the package's ``watch`` attribute is the function)
    watch_module = importlib.import_module("gradwatch.recording.watch")

    def proposed(self: Schedule, window: int, base: int, n_layers: int) -> int:
        return min(2 * window, 16) if rank == 1 else window

    model = nn.parallel.DistributedDataParallel(_mlp())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    windows = []
    with pytest.MonkeyPatch.context() as mp_:
        mp_.setattr(watch_module, "FLUSH_EVERY", 4)
        mp_.setattr(Schedule, "flush_window", proposed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            settings = {"sample_every": 3, "dense_steps": 2, "overhead": 0.03}
            with gw.watch(model, opt, run_dir=run_dir, **settings) as w:
                for x in [b for _ in range(8) for b in _mlp_batches()]:
                    opt.zero_grad()
                    loss = _loss(model(half(x)))
                    loss.backward()
                    opt.step()
                    w.log(loss=loss, reduce="mean")
                    windows.append(w.flush_every)
    return {
        "windows": windows,
        "warnings": [str(c.message) for c in caught if "gradwatch" in str(c.message)],
    }


def _zeroing_run(rank: int, half: Callable[[Any], Any], out: str) -> dict[str, Any]:
    """A DDP loop that never zeroes its gradients, and one that zeroes in place (each
    ``.grad`` then moves by 2 and by 3 a step: DDP copies the averaged bucket back into it);
    with ``gradient_as_bucket_view``, a never-zeroed loop (not judged). What each probe kept,
    and the never-zeroed loop's findings."""
    from gradwatch.recording.zeroing import PERIOD

    seen: dict[str, Any] = {}
    for name, zero, view in [
        ("never", None, False),
        ("in_place", False, False),
        ("view", None, True),
    ]:
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(_mlp(), gradient_as_bucket_view=view)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        with gw.watch(model, opt, run_dir=f"{out}/{name}", overhead=None) as w:
            for step in range(5 * PERIOD):
                if zero is not None:
                    opt.zero_grad(set_to_none=zero)
                x = _mlp_batches()[step % 4]
                loss = _loss(model(half(x)))
                loss.backward()
                opt.step()
                w.log(loss=loss)
        seen[name] = w.trace.meta["config"]["grad_zeroing"]
        if name == "never" and rank == 0:
            seen["rules"] = [f.rule for f in gw.diagnose(w.trace) if "never_zeroed" in f.evidence]
    return seen


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:

        def half(x: torch.Tensor) -> torch.Tensor:
            return x[rank * 4 : rank * 4 + 4]

        ddp = nn.parallel.DistributedDataParallel(_mlp())
        w = _train(ddp, _mlp_batches(), f"{out}/ddp", half)
        reducer = w._buffer.reducer
        assert reducer is not None
        info = {"collectives": reducer.collectives}

        rnn = nn.parallel.DistributedDataParallel(_Rnn())
        _train(rnn, _rnn_batches(), f"{out}/rnn", half)

        # Rank 0 alone logs a reduce= scalar: the ranks' layouts of reduce= scalars differ,
        # so they stay rank 0's own (with a warning); activations are still added; no hang.
        model = nn.parallel.DistributedDataParallel(_mlp())
        opt = torch.optim.Adam(model.parameters(), lr=0.05)  # as _reference steps
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with gw.watch(model, opt, run_dir=f"{out}/uneven", **SETTINGS) as w:
                for x in _mlp_batches()[:3]:
                    opt.zero_grad()
                    loss = _loss(model(half(x)))
                    loss.backward()
                    opt.step()
                    w.log(loss=loss, reduce="mean")
                    w.log(local_loss=loss)
                    if rank == 0:
                        w.log(only_rank0=1.0, reduce="sum")
        info["layout_warnings"] = sum("different scalars layouts" in str(c.message) for c in caught)

        info["budget"] = _budget_run(rank, half, f"{out}/budget")
        info["window"] = _window_run(rank, half, f"{out}/window")
        info["zeroing"] = _zeroing_run(rank, half, f"{out}/zeroing")

        from torch.distributed.fsdp import fully_shard

        model = _mlp()
        for layer in model:
            if isinstance(layer, nn.Linear):
                fully_shard(layer)
        fully_shard(model)
        # With clip_grad_norm_, whose total norm is a DTensor under FSDP2.
        _train(model, _mlp_batches(), f"{out}/fsdp", half, clip=CLIP)
        Path(f"{out}/info{rank}.json").write_text(json.dumps(info))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    mp.start_processes(_worker, args=(_free_port(), str(out)), nprocs=2, start_method="spawn")
    return out


def _reference(
    model: nn.Module, batches: list[torch.Tensor], *, clip: float | None = None
) -> gw.Trace:
    """One process, the full batch, the mean of the two half-batch losses (what DDP steps)."""
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    with gw.watch(model, opt, **SETTINGS) as w:
        for x in batches:
            opt.zero_grad()
            loss = (_loss(model(x[:4])) + _loss(model(x[4:]))) / 2
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            w.log(loss=loss, seen=8)
    return w.trace


def _compare(trace: gw.Trace, ref: gw.Trace) -> None:
    assert list(trace.steps) == list(ref.steps) == list(range(STEPS))
    for metric in METRICS:
        got, want = trace.matrix(metric), ref.matrix(metric)
        # Measured where the reference measured it, and equal there.
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=metric)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7, err_msg=metric)
    for name in ("loss", "seen", "global_grad_norm"):
        np.testing.assert_allclose(trace.scalar(name), ref.scalar(name), rtol=1e-6, err_msg=name)


def test_ddp_statistics_are_those_of_the_global_batch(runs: Path) -> None:
    """Under DDP every per-layer statistic and the mean-reduced loss equal one process's."""
    trace = gw.load(runs / "ddp")
    ref = _reference(_mlp(), _mlp_batches())
    # The sampled activation metrics are there, not all missing.
    for metric in ("act_saturated", "act_dead", "out_grad_norm", "update_ratio"):
        assert np.isfinite(trace.matrix(metric)).any(), metric
    _compare(trace, ref)
    # A scalar logged without reduce= is rank 0's own: the first half's loss.
    with torch.no_grad():
        first_half = float(_loss(_mlp()(_mlp_batches()[0][:4])))
    np.testing.assert_allclose(trace.scalar("local_loss")[0], first_half, rtol=1e-6)
    assert trace.config["world_size"] == 2 and trace.config["sharded"] is False
    # Two collectives per flush, three flushes; no collective on plain steps.
    assert json.loads((runs / "info0.json").read_text())["collectives"] == 6


def test_scalars_logged_on_one_rank_stay_its_own(runs: Path) -> None:
    """When the ranks log different reduce= scalars these stay rank 0's own: no hang, a
    warning, and the activation statistics are still the global batch's."""
    trace = gw.load(runs / "uneven")
    np.testing.assert_array_equal(trace.scalar("only_rank0"), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(trace.scalar("loss"), trace.scalar("local_loss"))
    ref = _reference(_mlp(), _mlp_batches()[:3])
    for metric in ("act_std", "out_grad_norm"):
        np.testing.assert_allclose(trace.matrix(metric), ref.matrix(metric), rtol=2e-5)
    # Warned once per run, on rank 0 (rank 1 warns too, not checked here).
    assert json.loads((runs / "info0.json").read_text())["layout_warnings"] == 1


def test_ddp_recurrent_profiles_are_global(runs: Path) -> None:
    """Recurrent input-gradient profiles under DDP are those of the full batch."""
    trace = gw.load(runs / "rnn")
    ref = _reference(_Rnn(), _rnn_batches())
    _compare(trace, ref)
    for kind in ("whole", "last_position"):
        got = trace.input_grad_profile("module.rnn", kind)
        want = ref.input_grad_profile("rnn", kind)
        np.testing.assert_array_equal(got.steps, want.steps)
        np.testing.assert_allclose(got.values, want.values, rtol=2e-5, err_msg=kind)


def test_fsdp2_statistics_are_of_the_full_parameters(runs: Path) -> None:
    """Under FSDP2 (DTensor shards) norms are of the full parameters and gradients."""
    trace = gw.load(runs / "fsdp")
    ref = _reference(_mlp(), _mlp_batches(), clip=CLIP)
    # fully_shard keeps the user's module names and classes' order.
    assert trace.layer_names == ref.layer_names == ["0", "2", "4"]
    assert trace.config["sharded"] is True
    _compare(trace, ref)
    # Pre-clip statistics, and the clipped norm the optimizer used, of the full gradient.
    assert (trace.scalar("clip_coef") < 1).all()
    for name in ("clip_coef", "global_grad_norm_clipped"):
        np.testing.assert_allclose(trace.scalar(name), ref.scalar(name), rtol=1e-5, err_msg=name)


def test_ranks_sample_the_same_steps_under_the_budget(runs: Path) -> None:
    """Under the overhead budget each rank measures its own cost, yet the ranks must sample
    the same steps (their sums add up at each flush): the spacing changes only at a flush, to
    the widest any rank proposed. Rank 1 measured 3e4x the cost of rank 0: both sampled the
    same steps, past the dense start sparser than every step, with windows holding no
    sampled step at all, and no layout warning. A per-batch StepLR(10, 0.1) cuts the rate
    tenfold at steps 10, 20 and 30 on every rank: each samples the step after each cut."""
    info = [json.loads((runs / f"info{r}.json").read_text())["budget"] for r in (0, 1)]
    s0, s1 = info[0]["sampled_0"], info[1]["sampled_1"]
    assert s0 == s1, info
    assert s0[:4] == [0, 1, 2, 3]  # the dense start
    assert [s for s in s0 if s % 2] == [1, 3, 11, 21, 31]  # off sample_every=2: forced
    late = [s for s in s0 if s >= 4]  # every 2nd step at most (sample_every=2)
    assert len(late) < 18 and info[0]["spacing"] == info[1]["spacing"] > 4, info
    assert info[0]["warnings"] == info[1]["warnings"] == []
    trace = gw.load(runs / "budget")
    assert list(trace.steps) == list(range(40))


def test_ranks_agree_on_the_flush_window(runs: Path) -> None:
    """With the flush window left to the recorder, each rank proposes one at a flush and all
    take the longest: rank 1's doubling (4, 8, 16) is every rank's, both flush at the same
    steps, and the trace holds every step's mean loss over the ranks."""
    info = [json.loads((runs / f"info{r}.json").read_text())["window"] for r in (0, 1)]
    assert info[0]["windows"] == info[1]["windows"], info
    assert sorted(set(info[0]["windows"])) == [4, 8, 16]
    assert info[0]["warnings"] == info[1]["warnings"] == []
    trace = gw.load(runs / "window")
    assert len(trace.scalar("loss")) == 40  # (plain steps' statistics may be thinned)
    assert trace.config["flush_auto"] and trace.config["flush_every"] == 16
    assert np.isfinite(trace.scalar("loss")).all()


def test_a_ddp_loop_that_never_zeroes_is_named_and_one_zeroing_in_place_is_not(
    runs: Path,
) -> None:
    """DDP's copy of the reduced bucket into each ``.grad`` is allowed for: never zeroed, every
    pair is kept on both ranks and the finding names it; zeroed in place, none is. With bucket
    views the version counts the whole bucket's writes: not judged (none kept)."""
    for rank in (0, 1):
        seen = json.loads((runs / f"info{rank}.json").read_text())["zeroing"]
        assert seen["never"]["checked"] == 5 and seen["never"]["kept"] == 5
        assert seen["in_place"]["checked"] == 5 and seen["in_place"]["kept"] == 0
        assert seen["view"]["kept"] == 0
    assert json.loads((runs / "info0.json").read_text())["zeroing"]["rules"] == [
        "exploding_gradient"
    ]
