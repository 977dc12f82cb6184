"""The run's images as MLflow datasets (src/atelier/tracking/datasets.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from atelier.tracking.datasets import (
    dataset_source,
    dvc_remote_url,
    log_image_datasets,
    run_dataset,
)

MANIFEST = pd.DataFrame({
    "path": [f"{label}/{i}.png" for label in ("cat", "dog") for i in range(5)] + ["bad.txt"],
    "sha256": [f"{i:064x}" for i in range(11)],
    "bytes": [100 + i for i in range(11)],
    "width": [32] * 11, "height": [32] * 11, "mode": ["RGB"] * 10 + [""],
    "status": ["ok"] * 10 + ["not_an_image"],
    "label": ["cat"] * 5 + ["dog"] * 5 + [""],
})
OK_PATHS = MANIFEST["path"][:10].tolist()
PRIMARY = {"paths": OK_PATHS, "is_val": [i % 4 == 0 for i in range(10)]}  # 3 held out


def _logged(tmp_path: Path, lineage: dict, project: Path) -> list:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # An experiment of this store (a test before may have left another store's active).
    experiment = mlflow.set_experiment("datasets-test")
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        log_image_datasets(MANIFEST, PRIMARY, lineage, project)
    return MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs, run.info.run_id


@pytest.mark.slow  # an MLflow run
def test_both_splits_are_logged_with_the_manifest_schema_counts_and_content_digest(tmp_path):
    lineage = {"data_hash": "ab" * 32, "data_version": f"content:{'ab' * 32}",
               "data_source": "data/01_raw/images"}
    inputs, run_id = _logged(tmp_path, lineage, tmp_path)
    by_context = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i for i in inputs}
    assert set(by_context) == {"training", "validation"}
    for context, rows in (("training", 7), ("validation", 3)):
        dataset = by_context[context].dataset
        assert dataset.name == f"images-{'train' if context == 'training' else 'validation'}"
        assert dataset.digest == "ab" * 16  # the content hash (MLflow keeps 36 characters)
        assert json.loads(dataset.source)["uri"] == str(tmp_path / "data/01_raw/images")
        assert json.loads(dataset.profile)["num_rows"] == rows
        columns = {c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]}
        assert columns == set(MANIFEST.columns)
        tags = {t.key: t.value for t in by_context[context].tags}
        assert tags["data_version"] == lineage["data_version"] and "dvc_remote" not in tags
    assert run_dataset(run_id, "validation").name == "images-validation"
    assert run_dataset(run_id, "test") is None


@pytest.mark.slow  # dvc in a git repo and an MLflow run
def test_dvc_tracked_images_name_the_dvc_version_and_remote(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "-q"], cwd=project, check=True)
    assert dvc_remote_url(project) is None  # no remote yet: the folder is the source
    subprocess.run([*dvc, "remote", "add", "-d", "studio", "s3://studio-data/atelier"],
                   cwd=project, check=True, capture_output=True)
    assert dvc_remote_url(project) == "s3://studio-data/atelier"
    assert dvc_remote_url(tmp_path / "not-a-repo") is None

    lineage = {"data_hash": "cd" * 32, "data_version": "dvc:0123456789abcdef0123456789abcdef.dir",
               "data_source": "data/01_raw/images"}
    assert dataset_source(lineage, project) == ("s3://studio-data/atelier", "s3://studio-data/atelier")
    inputs, _ = _logged(tmp_path, lineage, project)
    for dataset_input in inputs:
        assert dataset_input.dataset.digest == "0123456789abcdef0123456789abcdef"
        assert json.loads(dataset_input.dataset.source)["uri"] == "s3://studio-data/atelier"
        tags = {t.key: t.value for t in dataset_input.tags}
        assert tags["dvc_remote"] == "s3://studio-data/atelier"
