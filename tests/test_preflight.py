"""Checks before any node runs: bad training parameters and Inception weights that cannot be
had stop the run up front."""

from __future__ import annotations

import pytest
from conftest import run_kedro, test_env, tiny_params


@pytest.mark.slow
def test_missing_configured_weights_stop_the_run_before_any_node(kedro_project, tmp_path):
    missing = tmp_path / "nowhere" / "pt_inception.pth"
    env = test_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                   TORCH_HOME=str(tmp_path / "empty_torch_home"))
    result = run_kedro(kedro_project, "run", "--pipeline=train",
                       f"--params={tiny_params(**{'evaluation.inception_weights': str(missing)})}",
                       env=env, check=False)
    output = result.stdout + result.stderr
    squashed = "".join(output.split())  # Kedro's rich console wraps long lines
    assert result.returncode != 0
    assert "InceptionWeightsNotFoundError" in squashed and str(missing) in squashed
    assert "evaluation.inception_weights" in squashed  # says what to change
    assert "Running node" not in output  # nothing ran: no ingestion, no training
    assert not any((kedro_project / "data/02_intermediate").iterdir())
    # Refused before kedro-mlflow opened a run: no MLflow run is left behind as RUNNING.
    store = tmp_path / "mlflow.db"
    if store.exists():
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{store}")
        experiments = [e.experiment_id for e in client.search_experiments()]
        assert client.search_runs(experiments) == []


@pytest.mark.slow
def test_a_bad_training_value_stops_the_run_before_any_node(kedro_project, tmp_path):
    env = test_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = run_kedro(kedro_project, "run", "--pipeline=train",
                       f"--params={tiny_params(**{'training.augment_p': 1.5})}",
                       env=env, check=False)
    output = result.stdout + result.stderr
    squashed = "".join(output.split())  # Kedro's rich console wraps long lines
    assert result.returncode != 0
    assert "augment_pmustbein[0,1],got1.5" in squashed  # names the key and the value
    assert "Running node" not in output  # refused before ingestion and preprocessing
    assert not any((kedro_project / "data/02_intermediate").iterdir())
