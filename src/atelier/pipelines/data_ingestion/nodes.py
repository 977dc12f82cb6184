"""Inspect every file of the image source: what it is, and whether training can use it."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from atelier.core import images
from atelier.core.errors import DataSourceError
from atelier.core.storage import dataset_hash

logger = logging.getLogger(__name__)

# ``label``: the file's class, its top-level folder under the image root ("" for a file
# directly in the root); class-conditional training reads it (training.conditional).
MANIFEST_COLUMNS = ["path", "sha256", "bytes", "width", "height", "mode", "status", "label"]

_HOW_TO_FIX = (
    "Run 'kedro run --pipeline=sample_data' for the bundled sample, or set "
    "ingestion.source in conf/base/parameters_data_ingestion.yml."
)
# Statuses that mean "this is not an image at all", as opposed to an image we reject.
_NOT_IMAGES = {"empty", "not_an_image", "unreadable"}


def inspect_source(ingestion: dict) -> pd.DataFrame:
    """Inspect every file under ``ingestion.source`` (extracting it first if it is an archive).

    Sizes are recorded, not judged: whether an image is too small for the training
    resolution is preprocessing's decision (``preprocessing.allow_upscale``).

    Args:
        ingestion: ``params:ingestion`` (source, extract_dir, max_image_pixels,
            max_file_bytes, workers (decoding processes, None = one per core), and the
            archive caps max_archive_member_bytes, max_archive_total_bytes,
            max_archive_members).

    Returns:
        One row per file, in path order: the manifest columns plus ``detail`` (why a file
        was rejected, in words). ``label`` is the file's top-level folder under the image
        root (``a/b/c.png`` -> ``a``), or ``""`` for a file directly in the root.

    Raises:
        DataSourceError: The source is missing, holds no files, or holds nothing that is
            an image. ``UnsafeArchiveError`` for an archive with entries that would land
            outside ``extract_dir``.
    """
    source = Path(ingestion["source"])
    if not source.exists():
        raise DataSourceError(f"The image source {source} does not exist. {_HOW_TO_FIX}")
    if images.is_archive(source):
        images.extract_archive(
            source,
            ingestion["extract_dir"],
            max_member_bytes=ingestion["max_archive_member_bytes"],
            max_total_bytes=ingestion["max_archive_total_bytes"],
            max_members=ingestion["max_archive_members"],
        )
    elif not source.is_dir():
        raise DataSourceError(
            f"The image source {source} is neither a folder nor an archive "
            f"({', '.join(images.ARCHIVE_SUFFIXES)}). {_HOW_TO_FIX}"
        )
    root = images.image_root(source, ingestion["extract_dir"])
    inspections = images.scan_images(
        root,
        max_file_bytes=ingestion["max_file_bytes"],
        max_image_pixels=ingestion["max_image_pixels"],
        workers=ingestion.get("workers"),
    )
    if all(found.status in _NOT_IMAGES for found in inspections):
        held = f" (it holds {len(inspections)} files, none of them an image)" if inspections else ""
        raise DataSourceError(f"No images found under {source}{held}. {_HOW_TO_FIX}")
    table = pd.DataFrame([asdict(found) for found in inspections])
    table["label"] = [class_of(path) for path in table["path"]]
    # Nullable integers: rejected files have no size, and parquet keeps the type either way.
    return table.astype({"bytes": "int64", "width": "Int64", "height": "Int64"})


def class_of(path: str) -> str:
    """The class of the file at ``path`` (POSIX, relative to the image root): its top-level
    folder, or ``""`` for a file directly in the root."""
    folder, separator, _ = path.partition("/")
    return folder if separator else ""


def build_manifest(inspected_files: pd.DataFrame) -> pd.DataFrame:
    """The manifest: one row per file with exactly :data:`MANIFEST_COLUMNS`, in path order."""
    manifest = inspected_files[MANIFEST_COLUMNS].sort_values("path", ignore_index=True)
    counts = manifest["status"].value_counts()
    rejected = len(manifest) - int(counts.get("ok", 0))
    logger.info("Manifest: %d files, %d ok, %d rejected (%s).", len(manifest),
                int(counts.get("ok", 0)), rejected,
                ", ".join(f"{status}: {n}" for status, n in counts.items() if status != "ok") or "none")
    return manifest


def _cell(text: object) -> str:
    # Paths may hold characters that break a markdown table row.
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def report_rejections(inspected_files: pd.DataFrame, source: str) -> str:
    """A markdown report: files per status, then every rejected file with the reason.

    Args:
        inspected_files: The output of :func:`inspect_source`.
        source: ``params:ingestion.source``, named in the report's heading.
    """
    counts = inspected_files["status"].value_counts()
    rejected = inspected_files[inspected_files["status"] != "ok"]
    lines = [
        "# Rejected files",
        "",
        f"Source: `{source}`. {len(inspected_files)} files: {int(counts.get('ok', 0))} ok, "
        f"{len(rejected)} rejected.",
        "",
        "| status | files |",
        "| --- | ---: |",
        *(f"| {status} | {int(counts[status])} |" for status in images.STATUSES if status in counts),
        "",
        "## Rejected files",
        "",
    ]
    if rejected.empty:
        lines.append("No file was rejected.")
    else:
        lines += ["| path | status | reason |", "| --- | --- | --- |"]
        lines += [f"| {_cell(row.path)} | {row.status} | {_cell(row.detail)} |"
                  for row in rejected.itertuples()]
    return "\n".join(lines) + "\n"


def record_lineage(manifest: pd.DataFrame, source_version: dict, ingestion: dict) -> dict:
    """Where this run's data and code came from, computed once per run.

    Args:
        manifest: One row per input file (``path``, ``sha256``).
        source_version: The checkout's ``git_commit``, ``git_dirty`` and ``dvc_versions``
            (catalog entry ``source_version``).
        ingestion: ``params:ingestion`` (``source``, ``extract_dir``).

    Returns:
        ``data_hash`` (the dataset's identity: :func:`atelier.core.storage.dataset_hash` of
        the manifest's ``ok`` rows, the images training uses: a rejected stray file such as
        a ``.DS_Store`` changes neither it nor the checkpoint key), ``source_hash`` (the same
        over every file of the source, rejected ones too), ``data_version`` (``dvc:<md5>``
        when DVC tracks the source, else ``content:<data_hash>``), ``data_source``,
        ``git_commit``, ``git_dirty``, and ``image_root``: the folder the manifest's paths
        are relative to (the source, or where an archive source was extracted), which is
        how preprocessing finds the files without reading ``params:ingestion``. The
        tracking hook tags the run with the lineage (not ``image_root``: a local path);
        registration tags the model version.
    """
    source = ingestion["source"]
    used = manifest[manifest["status"] == "ok"]
    data_hash = dataset_hash(used["path"].tolist(), used["sha256"].tolist())
    source_hash = dataset_hash(manifest["path"].tolist(), manifest["sha256"].tolist())
    dvc_md5 = source_version["dvc_versions"].get(Path(source).as_posix())
    if source_version["git_commit"] is None:
        logger.warning("Not a git checkout: the run records no git_commit and cannot be "
                       "reproduced exactly.")
    elif source_version["git_dirty"]:
        logger.warning("The git tree has uncommitted changes to tracked files; git_commit %s "
                       "alone will not reproduce this run.", source_version["git_commit"][:12])
    return {
        "data_hash": data_hash,
        "source_hash": source_hash,
        "data_version": f"dvc:{dvc_md5}" if dvc_md5 else f"content:{data_hash}",
        "data_source": str(source),
        "git_commit": source_version["git_commit"],
        "git_dirty": source_version["git_dirty"],
        "image_root": str(images.image_root(source, ingestion["extract_dir"])),
    }
