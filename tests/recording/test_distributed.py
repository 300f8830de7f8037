"""Under DistributedDataParallel (gloo, 2 processes), rank 0 writes the global statistics."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import gradwatch as gw


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def _batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(8, 4, generator=gen) for _ in range(3)]


def _worker(rank: int, port: int, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = nn.parallel.DistributedDataParallel(_model())
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with gw.watch(model, opt, run_dir=run_dir) as w:
            for x in _batches():
                opt.zero_grad()
                loss = model(x[rank * 4 : rank * 4 + 4]).pow(2).mean()
                loss.backward()
                opt.step()
                w.log(loss=loss)
    finally:
        dist.destroy_process_group()


def test_ddp_rank0_writes_statistics_of_the_global_gradient(tmp_path: Path) -> None:
    """Two DDP ranks on half batches record what one process on the full batch records."""
    run = tmp_path / "ddp"
    mp.start_processes(_worker, args=(_free_port(), str(run)), nprocs=2, start_method="spawn")
    trace = gw.load(run)

    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.watch(model, opt) as w:
        for x in _batches():
            opt.zero_grad()
            # DDP averages the ranks' gradients: the mean of the two half-batch losses.
            loss = (model(x[:4]).pow(2).mean() + model(x[4:]).pow(2).mean()) / 2
            loss.backward()
            opt.step()
    ref = w.trace
    assert trace.layer_names == ["module.0", "module.2"]
    np.testing.assert_allclose(trace.matrix("grad_norm"), ref.matrix("grad_norm"), rtol=1e-5)
    assert trace.meta["status"] == "complete"


@pytest.fixture(autouse=True)
def _skip_without_gloo() -> None:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this build")
