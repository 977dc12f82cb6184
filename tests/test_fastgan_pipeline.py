"""A FastGAN model end to end: ``kedro run --pipeline=train --env=fastgan`` on the bundled
sample (64 x 64 RGB, as the environment sets it), registered, served by ``mlflow models
serve`` and drawn through the gallery's registry reader."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import make_project_copy, post_json, run_kedro, served_model, test_env, tiny_params
from mlflow.tracking import MlflowClient

from atelier.core.generate import generate_images
from atelier.gallery.drawing import draw_seed_grid
from atelier.tracking.versions import connect_registry


@pytest.mark.slow
def test_a_fastgan_trained_by_kedro_is_served_and_drawn(tmp_path, sample_images_dir,
                                                        standin_torch_home):
    project = make_project_copy(tmp_path / "project")
    shutil.copytree(sample_images_dir, project / "data" / "01_raw" / "images")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = tiny_params(**{"training.max_steps": 6, "training.g_width": 4,
                            "training.d_width": 4, "training.log_every": 2,
                            "training.eval_every": 0})
    run_kedro(project, "run", "--pipeline=train", "--env=fastgan", f"--params={params}",
              env=test_env(MLFLOW_TRACKING_URI=uri, TORCH_HOME=str(standin_torch_home)))

    client = MlflowClient(uri)
    champion = client.get_model_version_by_alias("atelier-generator", "champion")
    run = client.get_run(champion.run_id)
    assert run.data.params["training.architecture"] == "fastgan"
    assert "augment_p" in run.data.metrics  # ADA's strength, streamed while training
    history = pd.read_csv(project / "data" / "08_reporting" / "loss_history.csv")
    assert list(history["step"]) == [2, 4, 6] and "augment_p" in history.columns
    card = (project / "data" / "08_reporting" / "model_card.md").read_text()
    assert "| training.architecture | fastgan |" in card and "Adaptive augmentation" in card

    # The gallery's reader loads it and draws it, and names the architecture.
    versions = connect_registry("atelier-generator", uri)
    loaded = versions.load("champion")
    assert loaded.generator.architecture == "fastgan"
    assert "fastgan 64 x 64 RGB" in versions.describe(loaded)
    grid = np.asarray(draw_seed_grid(loaded.generator, [0, 1, 2, 3]))
    assert grid.shape[:2] == (2 * 64 + 3 * 2, 2 * 64 + 3 * 2)

    # Served in the model's own environment: the staged code includes core/fastgan.py.
    with served_model("models:/atelier-generator@champion", uri, tmp_path) as url:
        answer = post_json(url, {"dataframe_split": {"columns": ["seed"], "data": [[3], [4], [3]]}})
    images = np.asarray(answer["predictions"], dtype=np.uint8)
    assert images.shape == (3, 64, 64, 3) and np.array_equal(images[0], images[2])
    expected = generate_images(loaded.generator, [3, 4]).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(images[:2], expected)
