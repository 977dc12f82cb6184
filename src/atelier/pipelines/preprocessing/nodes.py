"""Decode, convert, resize and split the images the manifest marked ``ok``."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import torch

from atelier.core import images
from atelier.core.errors import DataSourceError

logger = logging.getLogger(__name__)


def preprocess_images(manifest: pd.DataFrame, lineage: dict, ingestion: dict,
                      preprocessing: dict) -> dict[str, Any]:
    """Build the training tensor from the manifest's ``ok`` rows, in path order.

    Args:
        manifest: One row per source file (see the data_ingestion pipeline).
        lineage: The run's lineage; its ``data_hash`` names the dataset.
        ingestion: ``params:ingestion``; locates the files (``source``, ``extract_dir``)
            and bounds decoding (``max_image_pixels``, ``allow_upscale``).
        preprocessing: ``params:preprocessing`` (resolution, channels, val_fraction, workers).

    Returns:
        ``{"images": uint8 N x C x H x W, "sha256": [...], "paths": [...], "is_val": bool N,
        "labels": int64 N, "class_names": [...], "resolution": int, "channels": int,
        "data_hash": str}``. ``is_val`` depends on each image's bytes only; ``data_hash``
        is the dataset's identity (the lineage's). ``class_names`` are the distinct
        manifest labels of the images, sorted (``""`` for images directly in the source
        folder), and ``labels[i]`` indexes image ``i``'s class in them; only
        class-conditional training uses them.

    Raises:
        DataSourceError: No usable image, images smaller than the resolution the manifest
            was not built for, files that changed since ingestion, or a manifest without
            a ``label`` column (written before labels existed).
    """
    resolution, channels = int(preprocessing["resolution"]), int(preprocessing["channels"])
    kept = manifest[manifest["status"] == "ok"].sort_values("path")
    if kept.empty:
        raise DataSourceError(
            f"None of the {len(manifest)} files in the manifest is usable (statuses: "
            f"{manifest['status'].value_counts().to_dict()}); see the rejection report "
            "(catalog entry rejection_report) for the reasons."
        )
    small = kept[kept[["width", "height"]].min(axis=1) < resolution]
    if len(small) and not ingestion["allow_upscale"]:
        raise DataSourceError(
            f"{len(small)} images in the manifest are smaller than {resolution} pixels (e.g. "
            f"{small['path'].iloc[0]}): the manifest was built for a lower resolution. Run "
            f"'kedro run --pipelines=data_ingestion,preprocessing' with the same "
            "preprocessing.resolution, or set ingestion.allow_upscale."
        )
    if "label" not in kept.columns:
        raise DataSourceError(
            "The manifest has no 'label' column (it was written by an older version). Run "
            "'kedro run --pipeline=data_ingestion' again first."
        )
    paths = kept["path"].tolist()
    tensor, sha256s = images.load_training_images(
        images.image_root(ingestion["source"], ingestion["extract_dir"]),
        paths, resolution, channels,
        max_image_pixels=ingestion["max_image_pixels"],
        workers=preprocessing["workers"],
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
    labels = torch.tensor([index[name] for name in kept["label"]], dtype=torch.int64)
    logger.info("Preprocessed %d images to %dx%d, %d channel(s); %d held out for validation.",
                len(paths), resolution, resolution, channels, int(is_val.sum()))
    return {
        "images": tensor,
        "sha256": sha256s,
        "paths": paths,
        "is_val": is_val,
        "labels": labels,
        "class_names": class_names,
        "resolution": resolution,
        "channels": channels,
        "data_hash": lineage["data_hash"],
    }
