"""``kedro run --pipeline=training`` on a small synthetic ``primary_images`` file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_kedro, tiny_params
from PIL import Image

from atelier.core.generate import generate_images
from atelier.core.models import GeneratorCheckpoint, load_generator

TINY = tiny_params(**{
    "training.max_steps": 4, "training.batch_size": 8, "training.latent_dim": 8,
    "training.g_width": 4, "training.d_width": 4, "training.log_every": 2,
    "training.checkpoint_every": 2, "evaluation.grid_size": 4,
})


def write_primary_images(project, count=40, val=8):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 1, 32, 32), dtype=torch.uint8, generator=generator)
    is_val = torch.zeros(count, dtype=torch.bool)
    is_val[:val] = True
    torch.save({
        "images": images, "sha256": [f"{i:064x}" for i in range(count)],
        "paths": [f"{i}.png" for i in range(count)], "is_val": is_val, "resolution": 32,
        "channels": 1, "data_hash": "c0ffee" * 10 + "abcd",
    }, project / "data/03_primary/images.pt")


@pytest.mark.slow
def test_training_pipeline_writes_generator_grid_and_history_and_resumes(kedro_project):
    write_primary_images(kedro_project)
    run_kedro(kedro_project, "run", "--pipeline=training", f"--params={TINY}")

    saved = GeneratorCheckpoint.load(kedro_project / "data/06_models/generator.pt")
    assert saved.config == {"resolution": 32, "channels": 1, "latent_dim": 8, "g_width": 4}
    assert saved.step == 4 and saved.training_device == "cpu"
    generator = load_generator(saved)
    samples = generate_images(generator, range(4))
    assert samples.shape == (4, 1, 32, 32)

    grid = Image.open(kedro_project / "data/08_reporting/training_samples.png")
    assert grid.size == (2 * 34 + 2, 2 * 34 + 2)  # 2 x 2 images of 32 px, 2 px padding
    # The grid shows those same EMA samples from seeds 0..3 (top-left one here).
    top_left = torch.from_numpy(np.array(grid.convert("L")))[2:34, 2:34]
    assert torch.equal(top_left, samples[0, 0])

    history = pd.read_csv(kedro_project / "data/08_reporting/loss_history.csv")
    assert list(history.columns) == ["step", "loss_d", "loss_g", "images_per_sec"]
    assert history["step"].tolist() == [2, 4]
    assert (history["images_per_sec"] > 0).all()

    # One folder, keyed by the data and the weight-shaping parameters.
    (checkpoint_dir,) = (kedro_project / "data/06_models/checkpoints").iterdir()
    assert len(checkpoint_dir.name) == 16
    assert sorted(p.name for p in checkpoint_dir.glob("*.pt")) == [
        "step_00000002.pt", "step_00000004.pt"]

    # Running again with more steps continues from the step-4 checkpoint.
    result = run_kedro(kedro_project, "run", "--pipeline=training",
                       f"--params={TINY.replace('max_steps=4', 'max_steps=6')}")
    assert "Resuming training from" in result.stdout + result.stderr
    history = pd.read_csv(kedro_project / "data/08_reporting/loss_history.csv")
    assert history["step"].tolist() == [2, 4, 6]
