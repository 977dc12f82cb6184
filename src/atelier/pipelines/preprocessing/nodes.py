"""Decode, convert, resize and split the images the manifest marked ``ok``."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import torch

from atelier.core import images
from atelier.core.errors import DataSourceError
from atelier.core.storage import dataset_hash

logger = logging.getLogger(__name__)


def preprocess_images(manifest: pd.DataFrame, lineage: dict,
                      preprocessing: dict) -> dict[str, Any]:
    """Build the training tensor from the manifest's ``ok`` rows, in path order.

    Args:
        manifest: One row per source file (see the data_ingestion pipeline).
        lineage: The run's lineage: ``data_hash`` names the dataset, ``image_root`` is
            where the manifest's paths are (both decided by ingestion, read here as data).
        preprocessing: ``params:preprocessing`` (resolution, channels, val_fraction,
            allow_upscale, workers).

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
        them; only class-conditional training uses them.

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
    tensor, sha256s = images.load_training_images(
        lineage["image_root"], paths, resolution, channels,
        max_image_pixels=largest, workers=preprocessing.get("workers"),
    )
    changed = [path for path, expected, found in zip(paths, kept["sha256"], sha256s, strict=True)
               if expected != found]
    if changed:
        raise DataSourceError(
            f"{len(changed)} files changed since ingestion (e.g. {changed[0]}). "
            "Run 'kedro run --pipeline=data_ingestion' again first."
        )
    is_val = images.assign_validation(sha256s, float(preprocessing["val_fraction"]))
    class_names = sorted(set(kept["label"]))
    index = {name: i for i, name in enumerate(class_names)}
    class_indices = torch.tensor([index[name] for name in kept["label"]], dtype=torch.int64)
    logger.info("Preprocessed %d images to %dx%d, %d channel(s); %d held out for validation.",
                len(paths), resolution, resolution, channels, int(is_val.sum()))
    return {
        "images": tensor,
        "sha256": sha256s,
        "paths": paths,
        "is_val": is_val,
        "class_indices": class_indices,
        "class_names": class_names,
        "resolution": resolution,
        "channels": channels,
        "data_hash": dataset_hash(paths, sha256s) if skipped else lineage["data_hash"],
        "skipped": skipped,
    }


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
