"""Several processes on this machine: ``launch_training`` spawns the ranks of a DDP group.

The calling process is rank 0; ranks 1.. are spawned processes that join a gloo (CPU) or
NCCL (CUDA) group on a free local port. Several machines use ``torchrun`` instead, which
makes the group itself: on ``python -m atelier.core.training`` every rank trains from the
same files, and on ``python -m atelier.cluster`` (the Kedro pipeline on rank 0) rank 0's
``launch_training`` hands a :class:`TrainingJob` to ranks 1.. (:mod:`atelier.core.jobs`).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import socket

import torch
import torch.distributed as dist

from atelier.core.jobs import jobs_enabled, run_on_every_rank
from atelier.core.shards import ShardedImages
from atelier.core.training.config import TrainingConfig
from atelier.core.training.loop import Report, TrainingResult, train_gan
from atelier.core.training.parent import TrainingState
from atelier.core.training.selection import Scorer

log = logging.getLogger(__name__)


def launch_training(images: torch.Tensor, config: TrainingConfig, *, data_hash: str,
                    report: Report | None = None, labels: torch.Tensor | None = None,
                    scorer: Scorer | None = None,
                    parent: TrainingState | None = None) -> TrainingResult:
    """Run ``train_gan`` in ``config.devices`` processes on this machine and return rank 0's result.

    The calling process is rank 0 (so ``report`` and ``scorer`` run here); ranks 1.. are
    spawned and join a gloo (CPU) or NCCL (CUDA) group on a free local port. With one
    device, or when a process group already exists (torchrun), this is ``train_gan`` itself.
    """
    if jobs_enabled():  # several machines (python -m atelier.cluster): this is rank 0
        return run_on_every_rank(TrainingJob(images, config, data_hash, labels, parent),
                                 report=report, scorer=scorer)
    if config.devices == 1 or dist.is_initialized():
        return train_gan(images, config, data_hash=data_hash, report=report, labels=labels,
                         scorer=scorer, parent=parent)
    backend = distributed_backend(config.device)
    if backend == "nccl" and torch.cuda.device_count() < config.devices:
        raise RuntimeError(f"training.devices is {config.devices} but only "
                           f"{torch.cuda.device_count()} GPU(s) are visible.")
    port = _free_port()
    context = torch.multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_spawned_rank, daemon=True,
                        args=(rank, config.devices, port, backend, images, labels, config,
                              data_hash, parent))
        for rank in range(1, config.devices)
    ]
    for worker in workers:
        worker.start()
    threads = torch.get_num_threads()
    try:
        _join_group(0, config.devices, port, backend)
        return train_gan(images, config, data_hash=data_hash, report=report, labels=labels,
                         scorer=scorer, parent=parent)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(threads)
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.terminate()
        failed = [w.exitcode for w in workers if w.exitcode]
        if failed:
            log.error("Training worker process(es) exited with code(s) %s.", failed)


@dataclasses.dataclass(frozen=True)
class TrainingJob:
    """What rank 0 hands the other ranks of a multi-machine group (:mod:`atelier.core.jobs`):
    the images (a sharded split, which each rank streams its share of, or a small tensor),
    the settings, the data hash and a fine-tune's parent."""

    images: torch.Tensor | ShardedImages
    config: TrainingConfig
    data_hash: str
    labels: torch.Tensor | None = None
    parent: TrainingState | None = None

    def run(self, report: Report | None = None, scorer: Scorer | None = None) -> TrainingResult:
        return train_gan(self.images, self.config, data_hash=self.data_hash, report=report,
                         labels=self.labels, scorer=scorer, parent=self.parent)


def _spawned_rank(rank: int, world_size: int, port: int, backend: str, images: torch.Tensor,
                  labels: torch.Tensor | None, config: TrainingConfig, data_hash: str,
                  parent: TrainingState | None) -> None:
    logging.basicConfig(level=logging.INFO)
    _join_group(rank, world_size, port, backend)
    try:
        train_gan(images, config, data_hash=data_hash, labels=labels, parent=parent)
    finally:
        dist.destroy_process_group()


def distributed_backend(device: str) -> str:
    uses_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if uses_cuda else "gloo"


def _join_group(rank: int, world_size: int, port: int, backend: str) -> None:
    if backend == "gloo":  # CPU processes share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=datetime.timedelta(minutes=10))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
