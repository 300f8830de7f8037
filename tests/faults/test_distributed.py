"""DDP (gloo, 2 processes) when one rank dies mid-run: rank 0's run directory keeps every
flushed step, whether rank 0 saw the failure ("failed") or the launcher killed it first
(SIGTERM, as torch.multiprocessing and torchrun do: "running", like any killed run)."""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import gradwatch as gw

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # A short timeout: rank 0 notices the dead peer in seconds, not the default 30 minutes.
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=10))
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(
        nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 4)
    with gw.watch(model, opt, run_dir=run_dir, flush_every=5):
        for step in range(40):
            if rank == 1 and step == 12:
                os._exit(1)  # a crashed node: no clean-up, no goodbye
            opt.zero_grad()
            model(x).pow(2).mean().backward()  # the all-reduce fails on rank 0 here
            opt.step()


def test_one_rank_dies(tmp_path: Path) -> None:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this build")
    run = tmp_path / "ddp"
    with pytest.raises(mp.ProcessExitedException):
        mp.start_processes(_worker, args=(_free_port(), str(run)), nprocs=2, start_method="spawn")
    trace = gw.load(run)
    assert trace.meta["status"] in ("failed", "running")
    n = len(trace.steps)
    assert n >= 10 and list(trace.steps) == list(range(n)) == list(trace.scalar_steps)
    assert trace.layer_names == ["module.0", "module.2"]
