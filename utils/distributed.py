"""Device and process-group set-up in one place.

``init_distributed`` reads the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK)
and gives the device, rank and world size; on one process everything here is a
no-op. ``launch`` starts ``ngpu`` processes itself when the user passed ``--ngpu N``
without torchrun. NCCL on GPUs, gloo on CPU.
"""
import logging
import os
import socket
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DistInfo:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``--device``: auto (cuda when available), cpu or cuda (the ``local_rank``-th GPU, modulo the count)."""
    if name not in DEVICE_CHOICES:
        raise ValueError(f"--device must be one of {DEVICE_CHOICES}, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for but no CUDA device is available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def place_model(model: torch.nn.Module, device: torch.device, channels_last: bool | None = None,
                inference: bool = False) -> torch.nn.Module:
    """Move ``model`` to ``device``; channels-last memory format (same outputs to float rounding, faster
    convolutions) when asked, by default on CUDA and, for ``inference`` (test.py, demo.py), on CPU too:
    there the backbone runs 1.3x (full size) to 1.9x (toy size) faster (BENCHMARKS.md, "Real time")."""
    model.to(device)
    if (device.type == "cuda" or inference) if channels_last is None else channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by the torchrun environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if torch_device.type == "cuda":
            torch.cuda.set_device(torch_device)
        dist.init_process_group("nccl" if torch_device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
        log.info("process %d of %d on %s", rank, world_size, torch_device)
    return DistInfo(torch_device, rank, world_size, local_rank)


def cleanup() -> None:
    """Leave the process group, if any."""
    if dist.is_initialized():
        dist.destroy_process_group()


def under_torchrun() -> bool:
    """Whether torchrun (or ``launch``) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, fn, world_size, args):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    fn(*args)


def launch(fn: Callable, nprocs: int, *args: object) -> object:
    """Run ``fn(*args)`` in ``nprocs`` processes (the torchrun environment set for each), or directly."""
    if nprocs <= 1 or under_torchrun():
        return fn(*args)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    mp.spawn(_worker, args=(fn, nprocs, args), nprocs=nprocs, join=True)
    return None


def all_reduce_sum(value: float | torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a number or tensor over processes (identity on one process)."""
    tensor = torch.as_tensor(value, dtype=torch.float64, device=info.device)
    if info.distributed:
        dist.all_reduce(tensor)
    return tensor


def barrier(info: DistInfo) -> None:
    """Wait for every process (a no-op on one)."""
    if info.distributed:
        dist.barrier()
