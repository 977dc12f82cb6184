"""Decode, validate, convert and resize images; scan a folder; extract archives safely.

Everything here is plain Python on files and arrays (stdlib, numpy, Pillow, torch): no
Kedro, so the same functions serve the pipelines, the benchmarks and a torch-only box.
Callers use the names re-exported here (``from atelier.core import images``):

- :mod:`.inspection`: :func:`scan_images` lists every file under a folder
  (:func:`list_files`) and inspects each one (:func:`inspect_image`): sha256, size, mode,
  and a status, ``ok`` or why it was rejected (:data:`STATUSES`). Nothing is skipped:
  dotfiles and odd extensions get a status too.
- :mod:`.archives`: :func:`extract_archive` unpacks a ``.zip`` / ``.tar[.gz|.bz2|.xz]`` /
  ``.tgz`` after checking every entry, so a hostile archive writes nothing at all;
  :func:`image_root` says which folder manifest paths are relative to.
- :mod:`.convert`: :func:`load_training_images` decodes the kept files into one uint8
  ``N x C x H x W`` tensor (:func:`load_training_image` per file: :func:`convert_image`,
  then :func:`resize_center_crop`); :func:`encode_png` writes deterministic PNG bytes.
- :mod:`.split`: :func:`assign_validation` (the train/validation split, by hash).
- :mod:`.parallel`: both scans decode in parallel over the available cores
  (:func:`resolve_workers`).
"""

from atelier.core.images.archives import ARCHIVE_SUFFIXES, extract_archive, image_root, is_archive
from atelier.core.images.convert import (
    convert_image,
    encode_png,
    load_training_image,
    load_training_images,
    resize_center_crop,
)
from atelier.core.images.inspection import (
    STATUSES,
    ImageInspection,
    inspect_image,
    list_files,
    scan_images,
)
from atelier.core.images.parallel import map_parallel, resolve_workers
from atelier.core.images.split import assign_validation

__all__ = [
    "ARCHIVE_SUFFIXES",
    "STATUSES",
    "ImageInspection",
    "assign_validation",
    "convert_image",
    "encode_png",
    "extract_archive",
    "image_root",
    "inspect_image",
    "is_archive",
    "list_files",
    "load_training_image",
    "load_training_images",
    "map_parallel",
    "resize_center_crop",
    "resolve_workers",
    "scan_images",
]
