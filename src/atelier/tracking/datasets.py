"""The run's images as MLflow datasets: the run page's *Datasets* panel.

Each run that reads the preprocessed images logs two MLflow datasets with
``mlflow.log_input``: the training split (context ``training``) and the held-out split
(context ``validation``), one row per image, with the manifest's columns (path, sha256,
bytes, width, height, mode, status, label) as the schema and the row count as profile.

- digest: the data version the run read: the DVC md5 of the image folder when DVC tracks
  it, otherwise the first 32 hex digits of the content hash ``data_hash`` (MLflow keeps
  at most 36 characters); the full ``data_version`` and ``data_hash`` are input tags;
- source: the DVC remote the folder is pushed to (e.g. ``s3://studio-data/atelier``)
  when DVC tracks it and a default remote is configured, otherwise the image folder;
- name: ``<folder name>-train`` / ``<folder name>-validation``.

The evaluation scores are logged against the registered model with the validation
dataset (:mod:`atelier.tracking.registry`), so the model's page says which data it was
scored on.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import mlflow
import mlflow.exceptions
import pandas as pd
from mlflow.data.pandas_dataset import PandasDataset

logger = logging.getLogger(__name__)

SPLITS = {"training": "train", "validation": "validation"}


@contextlib.contextmanager
def _quiet():
    """MLflow registers its local-file source resolver twice and says so for every path;
    and it hints about integer columns as if the manifest were a model signature."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways")
        warnings.filterwarnings("ignore", message=".*Integer columns in Python")
        yield


def dvc_remote_url(project_path: str | Path) -> str | None:
    """The URL of the project's default DVC remote, or None (no DVC repo, no remote)."""
    try:
        from dvc.repo import Repo

        with Repo(str(project_path)) as repo:
            config = repo.config
            name = config["core"].get("remote")
            return str(config["remote"][name]["url"]) if name else None
    except Exception as error:  # noqa: BLE001 - any DVC trouble: fall back to the folder
        logger.debug("No DVC remote for %s: %s", project_path, error)
        return None


def dataset_source(lineage: dict, project_path: str | Path) -> tuple[str, str | None]:
    """``(source, dvc remote or None)`` for ``lineage``'s images: the default DVC remote's
    URL when DVC tracks the folder and one is configured, else the folder's absolute path."""
    if str(lineage.get("data_version", "")).startswith("dvc:"):
        remote = dvc_remote_url(project_path)
        if remote:
            return remote, remote
    folder = Path(str(lineage.get("data_source", "")))
    return str(folder if folder.is_absolute() or "://" in str(folder)
               else (Path(project_path) / folder).resolve()), None


def image_datasets(manifest: pd.DataFrame, primary_images: dict, lineage: dict,
                   source: str) -> dict[str, PandasDataset]:
    """``{"training": dataset, "validation": dataset}``: the manifest rows of the images
    in each split of ``primary_images`` (see the module docstring for name and digest)."""
    data_version = str(lineage.get("data_version", ""))
    digest = (data_version.removeprefix("dvc:") if data_version.startswith("dvc:")
              else str(lineage["data_hash"]))[:32]
    rows = manifest.set_index("path")
    is_val = [bool(flag) for flag in primary_images["is_val"]]
    folder = Path(str(lineage.get("data_source", ""))).name or "images"
    datasets = {}
    for context, suffix in SPLITS.items():
        paths = [path for path, held_out in zip(primary_images["paths"], is_val, strict=True)
                 if held_out == (context == "validation")]
        with _quiet():
            datasets[context] = mlflow.data.from_pandas(
                rows.loc[paths].reset_index(), source=source, name=f"{folder}-{suffix}",
                digest=digest)
    return datasets


def log_image_datasets(manifest: pd.DataFrame, primary_images: dict, lineage: dict,
                       project_path: str | Path) -> None:
    """Log both splits to the active MLflow run (see the module docstring)."""
    source, remote = dataset_source(lineage, project_path)
    tags = {"data_version": str(lineage.get("data_version", "")),
            "data_hash": str(lineage.get("data_hash", ""))}
    if remote:
        tags["dvc_remote"] = remote
    for context, dataset in image_datasets(manifest, primary_images, lineage, source).items():
        _log_input(dataset, context, tags)


def _log_input(dataset, context: str, tags: dict[str, str], attempts: int = 3) -> None:
    """``mlflow.log_input``, again when a concurrent run on the same server inserted the same
    dataset (same experiment, name and digest) between the server's lookup and its insert:
    the server answers with a unique-key violation; the next attempt finds the row."""
    for attempt in range(attempts):
        try:
            with _quiet():
                mlflow.log_input(dataset, context=context, tags=tags)
            return
        except mlflow.exceptions.MlflowException as error:
            text = str(error)
            if attempt == attempts - 1 or not ("UniqueViolation" in text or "UNIQUE constraint" in text
                                               or "already exists" in text):
                raise
            logger.info("Dataset %s was logged concurrently by another run: retrying.",
                        dataset.name)


def run_dataset(run_id: str, context: str):
    """The dataset (``mlflow.entities.Dataset``) logged to ``run_id`` with ``context``, or
    None."""
    for dataset_input in mlflow.get_run(run_id).inputs.dataset_inputs:
        if any(tag.key == "mlflow.data.context" and tag.value == context
               for tag in dataset_input.tags):
            return dataset_input.dataset
    return None
