"""Decode, convert, resize and split the images the manifest marked ``ok``."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any

import numpy as np
import pandas as pd
import torch

from atelier.core import images
from atelier.core.errors import DataSourceError
from atelier.core.images.sharded import SliceResult, SliceTask, run_slice
from atelier.core.params import as_float
from atelier.core.shards import (
    ShardError,
    Store,
    images_per_shard,
    read_index,
    shard_key,
    split_slices,
    write_index,
    write_shard,
)
from atelier.core.storage import dataset_hash
from atelier.pipelines.preprocessing.engines import cluster_address, dask_runner

DEFAULT_SHARDS = "data/03_primary/shards"
# Files per Dask task on the tensor path.
_DASK_SLICE = 1024

logger = logging.getLogger(__name__)


def preprocess_images(manifest: pd.DataFrame, lineage: dict,
                      preprocessing: dict) -> dict[str, Any]:
    """Build the training images from the manifest's ``ok`` rows, in path order: one
    tensor, or shards that training streams (``preprocessing.storage``, :func:`choose_storage`).

    Args:
        manifest: One row per source file (see the data_ingestion pipeline).
        lineage: The run's lineage: ``data_hash`` names the dataset, ``image_root`` is
            where the manifest's paths are (both decided by ingestion, read here as data).
        preprocessing: ``params:preprocessing`` (resolution, channels, val_fraction,
            allow_upscale, workers, storage, shards, shard_mb, shards_above_gb, cluster).

    Returns:
        ``{"images": uint8 N x C x H x W, "sha256": [...], "paths": [...], "is_val": bool N,
        "class_indices": int64 N, "class_names": [...], "resolution": int, "channels": int,
        "data_hash": str, "skipped": [{"path", "width", "height", "reason"}, ...]}``.
        ``is_val`` depends on each image's bytes only. ``skipped`` is the quarantine
        record: the ``ok`` images smaller than the resolution, left out unless
        ``allow_upscale`` (each is also named in the log). ``data_hash`` is the identity of
        the images used: the lineage's when nothing is skipped, else the same hash over
        the images kept, so skipping images (or taking them back with ``allow_upscale``)
        never resumes a checkpoint trained on other images. ``class_names`` are the
        distinct manifest labels of the images, sorted (``""`` for images directly in the
        source folder), and ``class_indices[i]`` is the position of image ``i``'s label in
        them; only class-conditional training uses them. With shards, ``images`` is
        replaced by ``shards``: ``{"location", "key", "index"}`` of the dataset written under
        ``preprocessing.shards`` (:mod:`atelier.core.shards`; its splits' rows are
        ``images[~is_val]`` and ``images[is_val]``, byte for byte); everything else is the same.

    Raises:
        DataSourceError: No usable image (none ``ok``, or all smaller than the resolution
            without ``allow_upscale``), files that changed since ingestion, or a manifest
            or lineage written by an older ingestion (no ``label`` column, no
            ``image_root``).
    """
    resolution, channels = int(preprocessing["resolution"]), int(preprocessing["channels"])
    kept = manifest[manifest["status"] == "ok"].sort_values("path")
    if kept.empty:
        raise DataSourceError(
            f"None of the {len(manifest)} files in the manifest is usable (statuses: "
            f"{manifest['status'].value_counts().to_dict()}); see the rejection report "
            "(catalog entry rejection_report) for the reasons."
        )
    _check_ingestion_version(kept, lineage)
    kept, skipped = _drop_small(kept, resolution, bool(preprocessing.get("allow_upscale", False)))
    paths = kept["path"].tolist()
    # Ingestion decoded every ok image under its pixel cap: the largest of them bounds
    # decoding here (Pillow's bomb guard), without reading params:ingestion.
    largest = int((kept["width"].astype("int64") * kept["height"].astype("int64")).max())
    decode = DecodeSettings(lineage["image_root"], resolution, channels, largest)
    storage = choose_storage(preprocessing, len(paths), channels, resolution)
    address = cluster_address(preprocessing.get("cluster"))
    class_names = sorted(set(kept["label"]))
    index = {name: i for i, name in enumerate(class_names)}
    class_indices = torch.tensor([index[name] for name in kept["label"]], dtype=torch.int64)
    data_hash = dataset_hash(paths, kept["sha256"].tolist()) if skipped else lineage["data_hash"]
    val_fraction = float(preprocessing["val_fraction"])
    record = {"paths": paths, "class_indices": class_indices, "class_names": class_names,
              "resolution": resolution, "channels": channels, "data_hash": data_hash,
              "skipped": skipped}
    if storage == "shards":
        # The split is decided by each file's sha256, which the manifest already holds (and
        # every decoded file is checked against): the shards of each split are written as
        # their files are decoded, none held back in memory.
        sha256s = kept["sha256"].tolist()
        is_val = images.assign_validation(sha256s, val_fraction)
        shards = write_sharded(decode, paths, sha256s, is_val, preprocessing, data_hash, address)
        primary = {**record, "sha256": sha256s, "is_val": is_val, "shards": shards}
    else:
        tensor, sha256s = _decode_tensor(decode, paths, preprocessing.get("workers"), address)
        _check_unchanged(paths, kept["sha256"].tolist(), sha256s)
        is_val = images.assign_validation(sha256s, val_fraction)
        primary = {**record, "images": tensor, "sha256": sha256s, "is_val": is_val}
    logger.info("Preprocessed %d images to %dx%d, %d channel(s) (%s); %d held out for "
                "validation.", len(paths), resolution, resolution, channels,
                f"shards at {primary['shards']['location']}" if storage == "shards" else "tensor",
                int(is_val.sum()))
    return primary


def storage_setting(preprocessing: dict) -> str:
    """``preprocessing.storage`` (default ``tensor``), refused unless tensor, shards or auto."""
    storage = preprocessing.get("storage", "tensor")
    if storage not in ("tensor", "shards", "auto"):
        raise ValueError(f"preprocessing.storage must be tensor, shards or auto, not {storage!r}.")
    return storage


def choose_storage(preprocessing: dict, count: int, channels: int, resolution: int) -> str:
    """``tensor`` or ``shards``: ``preprocessing.storage``, where ``auto`` means shards when
    the pixels (``count x channels x resolution^2`` bytes) exceed ``shards_above_gb``."""
    storage = storage_setting(preprocessing)
    if storage != "auto":
        return storage
    limit = float(preprocessing.get("shards_above_gb", 4))
    return "shards" if count * channels * resolution * resolution > limit * 1e9 else "tensor"


def _decode_tensor(decode: DecodeSettings, paths: list[str], workers: int | None,
                   address: str | None) -> tuple[torch.Tensor, list[str]]:
    """Every file into one uint8 tensor: this machine's processes, or Dask tasks of fixed
    slices (the same pixels either way)."""
    if address is None:
        return images.load_training_images(decode.root, paths, decode.resolution, decode.channels,
                                           max_image_pixels=decode.max_image_pixels, workers=workers)
    tasks = [decode.task(paths[part]) for part in split_slices(len(paths), _DASK_SLICE)]
    with dask_runner(address, workers) as run:
        results = run(tasks)
    return (torch.from_numpy(np.concatenate([result.images for result in results])),
            [sha for result in results for sha in result.sha256s])


def write_sharded(decode: DecodeSettings, paths: list[str], sha256s: list[str],
                  is_val: torch.Tensor, preprocessing: dict, data_hash: str,
                  address: str | None) -> dict[str, Any]:
    """Write both splits as shards under ``preprocessing.shards`` / :func:`shard_key` and
    return what ``primary_images["shards"]`` records: ``location`` (the dataset's folder),
    ``key`` and the ``index`` (:mod:`atelier.core.shards`). A dataset already there with
    the same key (the same images and settings) is reused, not written again."""
    shard_mb = as_float("preprocessing.shard_mb", preprocessing.get("shard_mb", 64))
    params = {"val_fraction": float(preprocessing["val_fraction"]), "shard_mb": shard_mb,
              "allow_upscale": bool(preprocessing.get("allow_upscale", False)),
              "resolution": decode.resolution, "channels": decode.channels}
    key = shard_key(data_hash, params)
    location = f"{str(preprocessing.get('shards', DEFAULT_SHARDS)).rstrip('/')}/{key}"
    with contextlib.suppress(ShardError):
        index = read_index(location)
        if index.get("data_hash") == data_hash:
            logger.info("Reusing the sharded dataset at %s (same images and settings).", location)
            return {"location": location, "key": key, "index": index}
    per_shard = images_per_shard(shard_mb, decode.channels, decode.resolution)
    Store(location).check_writable()  # a wrong bucket or folder stops here, not after decoding
    tasks, expected = [], []
    for split, rows in (("train", ~is_val), ("val", is_val)):
        split_paths = [path for path, keep in zip(paths, rows.tolist(), strict=True) if keep]
        split_sha = [sha for sha, keep in zip(sha256s, rows.tolist(), strict=True) if keep]
        for number, part in enumerate(split_slices(len(split_paths), per_shard)):
            tasks.append(decode.task(split_paths[part], location, split, number))
            expected.append(split_sha[part])
    logger.info("Writing %d shards of up to %d images to %s.", len(tasks), per_shard, location)
    if address is None:  # this machine's processes: shards side by side, or one shard's files
        workers = preprocessing.get("workers")
        results = (images.map_parallel(run_slice, tasks, workers, "shards", min_items=2,
                                       unit="shard")
                   if len(tasks) >= images.resolve_workers(workers)
                   else [_run_here(task, workers) for task in tasks])
    else:
        with dask_runner(address, preprocessing.get("workers")) as run:
            results = run(tasks)
    _check_unchanged([path for task in tasks for path in task.paths],
                     [sha for part in expected for sha in part],
                     [sha for result in results for sha in result.sha256s])
    splits = {split: {"count": sum(r.shard[1] for r, t in zip(results, tasks, strict=True)
                                   if t.split == split),
                      "shards": [r.shard for r, t in zip(results, tasks, strict=True)
                                 if t.split == split]}
              for split in ("train", "val")}
    index = {"key": key, "data_hash": data_hash, "params": params, "images_per_shard": per_shard,
             "resolution": decode.resolution, "channels": decode.channels, "splits": splits}
    return {"location": location, "key": key, "index": write_index(location, index)}


def _run_here(task: SliceTask, workers: int | None) -> SliceResult:
    """One shard on this machine: its files decoded over the process pool, then written."""
    tensor, sha256s = images.load_training_images(
        task.root, list(task.paths), task.resolution, task.channels,
        max_image_pixels=task.max_image_pixels, workers=workers)
    return SliceResult(tuple(sha256s),
                       shard=write_shard(task.location, task.split, task.number, tensor.numpy()))


def _check_unchanged(paths: list[str], expected: list[str], found: list[str]) -> None:
    changed = [path for path, before, now in zip(paths, expected, found, strict=True)
               if before != now]
    if changed:
        raise DataSourceError(
            f"{len(changed)} files changed since ingestion (e.g. {changed[0]}). "
            "Run 'kedro run --pipeline=data_ingestion' again first."
        )


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
    root: str
    resolution: int
    channels: int
    max_image_pixels: int

    def task(self, paths: list[str], location: str | None = None, split: str = "train",
             number: int = 0) -> SliceTask:
        return SliceTask(str(self.root), tuple(paths), self.resolution, self.channels,
                         self.max_image_pixels, location, split, number)


def _check_ingestion_version(kept: pd.DataFrame, lineage: dict) -> None:
    """Refuse a manifest or lineage written by an older ingestion, saying what to run."""
    if "image_root" not in lineage:
        raise DataSourceError(
            "The lineage does not say where the images are (it was written before "
            "image_root existed). Run 'kedro run --pipeline=data_ingestion' again first."
        )
    if "label" not in kept.columns:
        raise DataSourceError(
            "The manifest has no 'label' column (it was written by an older version). Run "
            "'kedro run --pipeline=data_ingestion' again first."
        )


def _drop_small(kept: pd.DataFrame, resolution: int,
                allow_upscale: bool) -> tuple[pd.DataFrame, list[dict]]:
    """(the rows to use, the quarantine record of those left out as smaller than
    ``resolution``); nothing is left out when ``allow_upscale``."""
    small = kept[["width", "height"]].astype("int64").min(axis=1) < resolution
    if allow_upscale or not small.any():
        return kept, []
    skipped = [{"path": row.path, "width": int(row.width), "height": int(row.height),
                "reason": f"too_small: shorter side below preprocessing.resolution {resolution}"}
               for row in kept[small].itertuples()]
    if small.all():
        raise DataSourceError(
            f"All {len(kept)} usable images are smaller than {resolution} pixels (e.g. "
            f"{skipped[0]['path']}, {skipped[0]['width']}x{skipped[0]['height']}): lower "
            "preprocessing.resolution, or set preprocessing.allow_upscale to upscale them."
        )
    logger.warning("Skipped %d of %d images smaller than %d pixels (set preprocessing.allow_upscale "
                   "to upscale them instead): %s", len(skipped), len(kept), resolution,
                   ", ".join(f"{item['path']} ({item['width']}x{item['height']})" for item in skipped))
    return kept[~small], skipped
