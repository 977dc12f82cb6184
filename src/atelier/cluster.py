"""``torchrun ... -m atelier.cluster [kedro run options]``: one Kedro run trained by the
processes of several machines.

Every rank joins the ``torch.distributed`` group torchrun describes (gloo on CPU, NCCL when
CUDA is available). Rank 0 runs the Kedro pipeline (``python -m atelier`` with the same
options, e.g. ``--pipeline=train --params=...``), so exactly one MLflow run is opened, by
kedro-mlflow on rank 0, and one model version is registered. The other ranks run no Kedro
at all: they run the jobs rank 0's nodes hand them (:mod:`atelier.core.jobs`): the
training (the images, the settings, the data hash, a fine-tune's parent:
:class:`atelier.core.training.distributed.TrainingJob`, their share of every step in DDP)
and the evaluation's scores (:class:`atelier.core.metrics.ScoringJob`, each rank's
Inception pass over its share of the seeds), and exit when rank 0 is done.

The images reach the other machines as a location, not as pixels, when preprocessing wrote
shards (``preprocessing.storage: shards`` with ``preprocessing.shards`` on ``s3://`` or a
folder every machine mounts): each rank streams its own share. Without shards the tensor
itself is sent to every rank (fine for small data). See README "Beyond one machine".

On one machine, two "nodes" as two processes (what the tests run)::

    torchrun --nnodes=2 --nproc-per-node=1 --rdzv-backend=c10d \\
        --rdzv-endpoint=127.0.0.1:29400 --rdzv-id=atelier -m atelier.cluster --pipeline=train
"""

from __future__ import annotations

import datetime
import logging
import os
import sys

import torch.distributed as dist

from atelier.core.jobs import JOBS_VARIABLE, end_jobs, serve_jobs
from atelier.core.training.distributed import distributed_backend

log = logging.getLogger(__name__)

# Ranks 1.. wait while rank 0 ingests and preprocesses (hours for a large archive): the
# group's timeout must outlast that, not torch's default 30 minutes.
TIMEOUT_VARIABLE = "ATELIER_CLUSTER_TIMEOUT_HOURS"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        raise SystemExit("python -m atelier.cluster runs under torchrun (it reads RANK and "
                         "WORLD_SIZE); on one machine use 'kedro run' with training.devices.")
    os.environ[JOBS_VARIABLE] = "1"
    hours = float(os.environ.get(TIMEOUT_VARIABLE, "12"))
    dist.init_process_group(distributed_backend(os.environ.get("ATELIER_DEVICE", "auto")),
                            timeout=datetime.timedelta(hours=hours))
    rank, world_size = dist.get_rank(), dist.get_world_size()
    code = 0
    try:
        if rank == 0:
            try:
                code = _run_kedro(argv)
            finally:
                end_jobs()
        else:
            logging.basicConfig(level=logging.INFO,
                                format=f"%(asctime)s rank {rank} %(levelname)s %(name)s: %(message)s")
            log.info("Rank %d of %d: waiting for rank 0's jobs.", rank, world_size)
            jobs = serve_jobs()
            log.info("Rank %d: %d job(s) done; rank 0 has finished.", rank, jobs)
    finally:
        dist.destroy_process_group()
    return code


def _run_kedro(argv: list[str]) -> int:
    """``python -m atelier <argv>`` (Kedro's run command) in this process; its exit code."""
    from atelier.__main__ import main as atelier_main

    try:
        atelier_main(args=argv)
    except SystemExit as done:  # click ends the command with SystemExit
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
