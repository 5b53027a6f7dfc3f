"""Training on several GPUs or machines: fastai's `distrib_ctx` (Hugging Face accelerate) under a launcher.

Start one process per GPU with a launcher that sets RANK and WORLD_SIZE, which is what fastai reads:
`accelerate launch --multi_gpu --num_processes N --module kagglekit run ...` (torchrun underneath; add
`--num_machines`, `--machine_rank` and `--main_process_ip` for several machines) or `torchrun --nproc_per_node N`.
Without a launcher `distributed` and `main_process_first` do nothing and import nothing.

`accelerate launch --cpu --num_processes N` does NOT start N processes: without `--mpirun_hostfile` it runs
one plain process, and under mpirun RANK/WORLD_SIZE are unset until accelerate starts, so fastai would train
every process on its own. On machines without CUDA the same launchers work (gloo backend) thanks to three
adjustments `distributed` makes, each for an error fastai 2.8 + accelerate 1.x give otherwise:

- `cpu=True` for the Accelerator: seeing no GPU, accelerate would not start a process group, the model would
  stay unwrapped, and fastai fails with "'Sequential' object has no attribute 'device'";
- `sync_bn=False`: DDP refuses SyncBatchNorm on the CPU ("SyncBatchNorm layers only work with GPU modules");
- fastai's `DistributedDL` broadcasts the batch order as a CUDA tensor, as NCCL needs ("Found no NVIDIA driver
  on your system"); gloo broadcasts CPU tensors, so that one method is swapped while the context is open.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch, fastai and accelerate load only in a distributed job: the CLI stays quick to start
    from fastai.learner import Learner


def world_size() -> int:
    """Processes in this training job (1 without a launcher)."""
    return max(int(os.environ.get("WORLD_SIZE", 1)), 1)


def is_main_process() -> bool:
    """Rank 0: the one process that writes files (weights, checkpoints, predictions, run records)."""
    return int(os.environ.get("RANK", 0)) == 0


@contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block before the other ranks do, e.g. to create a folder the others then find."""
    if world_size() == 1:
        yield
        return
    import torch
    from accelerate import PartialState

    with PartialState(cpu=not torch.cuda.is_available()).main_process_first():
        yield


@contextmanager
def main_process_alone() -> Iterator[None]:
    """Rank 0 predicting by itself (TTA, validation) while the other ranks move on.

    fastai gathers every prediction batch across processes whenever WORLD_SIZE > 1, a collective the other
    ranks never join: the job hangs, or fails with gloo's "Received data size doesn't match expected size".
    Inside the block WORLD_SIZE reads 1, so `get_preds` keeps to this process.
    """
    saved = os.environ.get("WORLD_SIZE")
    os.environ["WORLD_SIZE"] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["WORLD_SIZE"]
        else:
            os.environ["WORLD_SIZE"] = saved


@contextmanager
def distributed(learn: Learner) -> Iterator[Learner]:
    """Fits inside the block train data-parallel over all processes (`learn.distrib_ctx`), under a launcher.

    Each process trains on its own share of every epoch's batches and gradients are averaged, so all ranks
    end with the same weights; only rank 0 should save them (`is_main_process`). Each optimizer step then
    sees WORLD_SIZE x the loader's batch. On GPUs this is fastai's context unchanged.
    """
    if world_size() == 1:
        yield learn
        return
    import fastai.distributed  # noqa: F401  (adds Learner.distrib_ctx)
    import torch

    on_cpu = not torch.cuda.is_available()
    with _broadcast_on_cpu() if on_cpu else nullcontext(), learn.distrib_ctx(sync_bn=not on_cpu, cpu=on_cpu):
        yield learn


def _cpu_broadcast(self, indices: list[int], rank: int) -> list[int]:
    """`DistributedDL._broadcast` for gloo: rank `rank`'s batch order to every rank, as a CPU tensor."""
    import torch

    tensor = torch.tensor(indices, dtype=torch.long)
    torch.distributed.broadcast(tensor, rank)
    return tensor.tolist()


@contextmanager
def _broadcast_on_cpu() -> Iterator[None]:
    from fastai.distributed import DistributedDL

    original = DistributedDL._broadcast
    DistributedDL._broadcast = _cpu_broadcast
    try:
        yield
    finally:
        DistributedDL._broadcast = original
