"""Work that rank 0 of a multi-machine group hands to the other ranks.

Under ``torchrun ... -m atelier.cluster`` only rank 0 runs the Kedro pipeline. When one of
its nodes reaches work that every rank should share (training, scoring), it calls
:func:`run_on_every_rank` with a job: a small picklable object with a ``run(**local)``
method. The job is broadcast, every other rank runs ``job.run()`` in :func:`serve_jobs`
and rank 0 runs ``job.run(**local)`` (``local``: what only rank 0 has, such as the live
MLflow reporter). When rank 0 is done it calls :func:`end_jobs`, and the other ranks leave.

Outside such a group (one process, the spawned ranks of ``training.devices``, or
``torchrun -m atelier.core.training``, where every rank runs the same code)
:func:`jobs_enabled` is false and nothing is broadcast.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol

import torch.distributed as dist

log = logging.getLogger(__name__)

# Set by ``python -m atelier.cluster`` on every rank.
JOBS_VARIABLE = "ATELIER_CLUSTER_JOBS"


class Job(Protocol):
    def run(self, **local: Any) -> Any: ...


def jobs_enabled() -> bool:
    """Whether this process is in a multi-machine group whose rank 0 hands out jobs."""
    return (bool(os.environ.get(JOBS_VARIABLE)) and dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1)


def run_on_every_rank(job: Job, **local: Any) -> Any:
    """Rank 0: send ``job`` to the other ranks, run it here with ``local``; its result."""
    if dist.get_rank() != 0:
        raise RuntimeError("Only rank 0 hands out jobs; the other ranks run serve_jobs().")
    dist.broadcast_object_list([job], src=0)
    return job.run(**local)


def serve_jobs() -> int:
    """Ranks 1..: run every job rank 0 sends until it sends ``None``; how many ran."""
    done = 0
    while True:
        message: list[Job | None] = [None]
        dist.broadcast_object_list(message, src=0)
        if message[0] is None:
            return done
        log.info("Rank %d: %s from rank 0.", dist.get_rank(), type(message[0]).__name__)
        message[0].run()
        done += 1


def end_jobs() -> None:
    """Rank 0: no job follows; the ranks in :func:`serve_jobs` return."""
    dist.broadcast_object_list([None], src=0)
