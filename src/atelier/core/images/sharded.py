"""Preprocessing as independent tasks: one fixed slice of the kept files per task.

A :class:`SliceTask` names a slice of the manifest's kept rows (paths relative to the image
root, in path order) and what to do with the pixels: write them as one shard
(:mod:`atelier.core.shards`) or hand them back (the tensor path). A task depends on its
slice alone, never on which worker runs it or when, so the process pool, a Dask cluster and
one process write the same shards and the same tensor. Tasks are module-level and
picklable, for the spawn start method and for Dask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atelier.core.images.convert import load_training_image
from atelier.core.shards import write_shard


@dataclass(frozen=True)
class SliceTask:
    root: str                  # the image root the paths are relative to
    paths: tuple[str, ...]     # this slice's files, in path order
    resolution: int
    channels: int
    max_image_pixels: int | None
    location: str | None = None  # <shards location>/<key>: write a shard there
    split: str = "train"
    number: int = 0              # the shard's number within its split


@dataclass(frozen=True)
class SliceResult:
    sha256s: tuple[str, ...]            # each file's sha256, as decoded
    images: np.ndarray | None = None    # the pixels (tensor path), else None
    shard: list | None = None           # the shard's index entry [name, count, sha256]


def run_slice(task: SliceTask) -> SliceResult:
    """Decode the task's files (:func:`~.convert.load_training_image` each); write them as
    shard ``task.number`` of ``task.split`` when the task has a location, else return them."""
    root = Path(task.root)
    decoded = [load_training_image(root / path, task.resolution, task.channels,
                                   task.max_image_pixels) for path in task.paths]
    sha256s = tuple(sha for sha, _ in decoded)
    images = np.stack([array for _, array in decoded])
    if task.location is None:
        return SliceResult(sha256s, images=images)
    return SliceResult(sha256s, shard=write_shard(task.location, task.split, task.number, images))
