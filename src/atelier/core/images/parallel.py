"""Run one function over many files on every core this process may use, keeping order.

Both scans (:func:`~atelier.core.images.inspection.scan_images` and
:func:`~atelier.core.images.convert.load_training_images`) go through :func:`map_parallel`.
The functions they send to workers must be module-level (a :func:`functools.partial` of one
is fine) so that the spawn start method can pickle them. A tqdm progress bar counts the
files done; like tqdm's ``disable=None``, it shows only on a terminal (CI logs stay quiet).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm.auto import tqdm

# Below this many files a process pool costs more than it saves.
_MIN_FILES_FOR_PROCESSES = 64

T = TypeVar("T")
R = TypeVar("R")


def resolve_workers(workers: int | None) -> int:
    """The number of decoding processes: ``workers``, or one per core this process may use."""
    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1 (or null for one per core), got {workers}.")
        return int(workers)
    # sched_getaffinity honours taskset/cgroup CPU pinning; cpu_count() would oversubscribe.
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _process_context() -> multiprocessing.context.BaseContext:
    # fork on Linux: workers inherit the already-imported modules, whereas spawn would make
    # each one re-import torch (~2 s). Workers only run Pillow/numpy/hashlib code, never
    # torch or CUDA, so forking a process that has initialised them is safe (the same choice
    # torch's DataLoader makes). Elsewhere fork is unavailable or unsafe: use spawn.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def map_parallel(function: Callable[[T], R], items: Sequence[T], workers: int | None,
                  description: str = "files", min_items: int = _MIN_FILES_FOR_PROCESSES,
                  unit: str = "file") -> list[R]:
    """``[function(item) for item in items]``, in order, over ``workers`` processes, with a
    progress bar named ``description`` (on a terminal only). Fewer than ``min_items`` items
    run in this process (for big items, such as whole shards, lower it)."""
    workers = min(resolve_workers(workers), len(items))
    with tqdm(total=len(items), desc=description, unit=unit, disable=None,
              dynamic_ncols=True) as progress:
        if workers <= 1 or len(items) < min_items:
            return [_counted(function(item), progress) for item in items]
        # A few chunks per worker: big enough to amortise pickling, small enough to balance
        # folders that mix thumbnails and 40-megapixel photos.
        chunksize = max(1, math.ceil(len(items) / (workers * 8)))
        with ProcessPoolExecutor(max_workers=workers, mp_context=_process_context()) as pool:
            return [_counted(result, progress)
                    for result in pool.map(function, items, chunksize=chunksize)]


def _counted(result: R, progress: tqdm) -> R:
    progress.update(1)
    return result
