"""notebooks/explore_registered_model.ipynb runs top to bottom against a small trained model."""

from __future__ import annotations

import mlflow
import nbformat
import pytest
import yaml
from conftest import PROJECT_ROOT
from digit_cases import digits
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient

from atelier.core.models import GeneratorCheckpoint
from atelier.core.training import TrainingConfig, train_gan
from atelier.tracking.promotion import promote_if_better
from atelier.tracking.registry import log_generator_model


def _train_small_generator(tmp_path, max_steps: int) -> GeneratorCheckpoint:
    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text())["training"]
    params.update(device="cpu", max_steps=max_steps, g_width=8, d_width=8, latent_dim=16, eval_every=0,
                  batch_size=32, sample_every=0, checkpoint_every=0, resume="never",
                  checkpoint_dir=str(tmp_path / f"checkpoints-{max_steps}"))
    return train_gan(digits(range(300)), TrainingConfig.from_params(params),
                     data_hash="0" * 64).checkpoint


@pytest.mark.slow
def test_notebook_explores_the_champion(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = mlflow.set_experiment("notebook-test")
    champion = None
    for steps, fid in ((5, 40.0), (30, 25.0)):
        with mlflow.start_run(experiment_id=experiment.experiment_id):
            version = str(log_generator_model(_train_small_generator(tmp_path, steps),
                                              "atelier-generator").registered_model_version)
        client.set_model_version_tag("atelier-generator", version, "fid", str(fid))
        promote_if_better(client, "atelier-generator", version,
                          {"fid": fid, "champion": champion}, 0.5)
        champion = {"version": version, "fid": fid}

    notebook = nbformat.read(PROJECT_ROOT / "notebooks/explore_registered_model.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(PROJECT_ROOT / "notebooks")}}).execute()

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    text = "".join(out.get("text", "") for out in outputs)
    assert "atelier-generator champion: version 2, FID 25.0" in text
    assert sum("image/png" in out.get("data", {}) for out in outputs) >= 3  # grid, walk, FID plot
    table = next(out["data"]["text/plain"] for out in outputs if "text/plain" in out.get("data", {})
                 and "aliases" in out["data"]["text/plain"])
    assert "champion" in table and "40.0" in table and "25.0" in table
