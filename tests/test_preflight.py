"""Checks before any node runs: bad training parameters and Inception weights that cannot be
had stop the run up front."""

from __future__ import annotations

import re

import pytest
from conftest import run_kedro, test_env, tiny_params

from atelier.hooks.preflight import check_preprocessing


def _refused_before_any_node(kedro_project, tmp_path, override: dict, **env: str) -> str:
    """Run the train pipeline with ``override``; check it failed before any node ran and
    return its output with whitespace removed (Kedro's rich console wraps long lines)."""
    env = test_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", **env)
    result = run_kedro(kedro_project, "run", "--pipeline=train",
                       f"--params={tiny_params(**override)}", env=env, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Running node" not in output  # nothing ran: no ingestion, no training
    assert not any((kedro_project / "data/02_intermediate").iterdir())
    # Refused before kedro-mlflow opened a run: no MLflow run is left behind as RUNNING.
    store = tmp_path / "mlflow.db"
    if store.exists():
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{store}")
        experiments = [e.experiment_id for e in client.search_experiments()]
        assert client.search_runs(experiments) == []
    return "".join(output.split())


@pytest.mark.slow
def test_missing_configured_weights_stop_the_run_before_any_node(kedro_project, tmp_path):
    missing = tmp_path / "nowhere" / "pt_inception.pth"
    squashed = _refused_before_any_node(kedro_project, tmp_path,
                                        {"evaluation.inception_weights": str(missing)},
                                        TORCH_HOME=str(tmp_path / "empty_torch_home"))
    assert "InceptionWeightsNotFoundError" in squashed and str(missing) in squashed
    assert "evaluation.inception_weights" in squashed  # says what to change


@pytest.mark.slow
def test_a_bad_training_value_stops_the_run_before_any_node(kedro_project, tmp_path):
    squashed = _refused_before_any_node(kedro_project, tmp_path, {"training.augment_p": 1.5})
    assert "augment_pmustbein[0,1],got1.5" in squashed  # names the key and the value


@pytest.mark.slow
@pytest.mark.parametrize(("override", "message"), [
    ({"evaluation.is_splits": 0}, "evaluation.is_splitsmustbeatleast1,got0"),
    ({"evaluation.fid_dims": 100}, "evaluation.fid_dimsmustbeoneof(64,192,768,2048)"),
    ({"preprocessing.resolution": 48}, "preprocessing.resolution:DCGANneedsapower-of-two"),
    ({"ingestion.max_file_bytes": 0}, "ingestion.max_file_bytesmustbeatleast1,got0"),
    # A shards location that cannot take a write stops the run before ingestion.
    ({"preprocessing.storage": "shards", "preprocessing.shards": "/proc/atelier-shards"},
     "Cannotwrite/proc/atelier-shards/.atelier-write-check"),
])
def test_a_bad_value_in_any_namespace_stops_the_run_before_any_node(kedro_project, tmp_path,
                                                                    override, message):
    squashed = _refused_before_any_node(kedro_project, tmp_path, override)
    assert message in squashed  # names the key and the value


@pytest.mark.parametrize(("override", "message"), [
    ({"storage": "parquet"}, "preprocessing.storage must be tensor, shards or auto"),
    ({"shard_mb": 0}, "preprocessing.shard_mb must be positive"),
    ({"shard_mb": "big"}, "preprocessing.shard_mb"),
    ({"shards_above_gb": -1}, "preprocessing.shards_above_gb must be positive"),
    ({"cluster": "my-laptop"}, "preprocessing.cluster must be null, 'local' or a Dask scheduler"),
    ({"storage": "auto", "shards": "gs://bucket/shards"}, "s3://bucket/prefix"),
])
def test_bad_storage_settings_are_refused_naming_the_key(override, message):
    params = {"resolution": 32, "channels": 1, "val_fraction": 0.2, "storage": "tensor",
              **override}
    with pytest.raises((ValueError, RuntimeError), match=re.escape(message)):
        check_preprocessing(params, "dcgan")


def test_a_writable_shards_folder_passes_and_keeps_nothing(tmp_path):
    check_preprocessing({"resolution": 32, "channels": 1, "val_fraction": 0.2,
                         "storage": "shards", "shards": str(tmp_path / "shards")}, "dcgan")
    assert list((tmp_path / "shards").iterdir()) == []
