"""Where preprocessing's decoding runs: this machine's process pool, or a Dask cluster.

``preprocessing.cluster`` (or the environment variable ``ATELIER_DASK_SCHEDULER``, which
overrides it) picks the engine:

- ``null``: this machine, one process per core (``preprocessing.workers``), as always;
- ``local``: a Dask ``LocalCluster`` of ``preprocessing.workers`` worker processes (one
  thread each) started for this run and stopped after it;
- ``tcp://host:8786`` (any Dask scheduler address): a running Dask cluster. Its workers
  must see the image folder at the same path (a shared file system) and write the shards
  where every worker and trainer can read them (``s3://...`` or a shared folder).

Dask, not Ray: the work is a flat map of independent tasks, one per shard
(:class:`~atelier.core.images.sharded.SliceTask`), which Dask's ``client.map`` does with a
pure-Python install (``dask[distributed]``, no daemon to manage), the same code joining a
scheduler by address; Kedro's own deployment guidance already runs pipelines on Dask.
``client.gather`` returns results in task order, and every task's output depends on its
slice alone, so the shards do not depend on scheduling.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence

from atelier.core.images import resolve_workers
from atelier.core.images.sharded import SliceResult, SliceTask, run_slice

logger = logging.getLogger(__name__)

SCHEDULER_VARIABLE = "ATELIER_DASK_SCHEDULER"

Runner = Callable[[Sequence[SliceTask]], list[SliceResult]]


def cluster_address(cluster: str | None) -> str | None:
    """The Dask cluster to use: ``ATELIER_DASK_SCHEDULER`` when set, else ``cluster``."""
    source = SCHEDULER_VARIABLE if os.environ.get(SCHEDULER_VARIABLE) else "preprocessing.cluster"
    address = os.environ.get(SCHEDULER_VARIABLE) or cluster
    if address is None:
        return None
    address = str(address).strip()
    if address != "local" and "://" not in address:
        raise ValueError(f"{source} must be null, 'local' or a Dask scheduler address such as "
                         f"tcp://host:8786, not {address!r}.")
    return address


@contextlib.contextmanager
def dask_runner(address: str, workers: int | None) -> Iterator[Runner]:
    """A runner that maps slice tasks over a Dask cluster (``local``: started here)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("preprocessing.cluster needs Dask: pip install 'atelier[dask]' "
                          "(or pip install 'dask[distributed]').") from None
    with contextlib.ExitStack() as stack:
        if address == "local":
            cluster = stack.enter_context(LocalCluster(
                n_workers=resolve_workers(workers), threads_per_worker=1, processes=True,
                dashboard_address=None))
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(address, timeout="60s"))
        info = client.scheduler_info(n_workers=-1)
        logger.info("Preprocessing on Dask at %s (%d workers).", info.get("address"),
                    len(info.get("workers", {})))

        def run(tasks: Sequence[SliceTask]) -> list[SliceResult]:
            # pure=False: a task is run even when an identical one ran before (it writes).
            return client.gather(client.map(run_slice, list(tasks), pure=False))

        yield run
