"""Serve a registered generator with ``mlflow models serve`` and ask it for images."""

from __future__ import annotations

import base64
import io
import json
import urllib.error

import mlflow
import numpy as np
import pytest
import torch
from conftest import post_json, served_model
from mlflow.tracking import MlflowClient
from PIL import Image

from atelier.core.generate import generate_images
from atelier.core.models import GeneratorCheckpoint, build_generator
from atelier.tracking.registry import CHAMPION, log_generator_model

CONFIG = {"resolution": 32, "channels": 1, "latent_dim": 16, "g_width": 8}


@pytest.mark.slow
def test_served_champion_answers_seeds_with_images(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    torch.manual_seed(0)
    generator = build_generator(CONFIG)
    checkpoint = GeneratorCheckpoint.from_generator(generator)
    experiment = mlflow.set_experiment("serving-test")
    with mlflow.start_run(experiment_id=experiment.experiment_id):
        info = log_generator_model(checkpoint, "atelier-generator")
    MlflowClient(uri).set_registered_model_alias("atelier-generator", CHAMPION,
                                                 str(info.registered_model_version))

    with served_model("models:/atelier-generator@champion", uri, tmp_path) as url:
        answer = post_json(url, {"dataframe_split": {"columns": ["seed"], "data": [[7], [8], [7]]}})
        images = np.asarray(answer["predictions"], dtype=np.uint8)
        assert images.shape == (3, 32, 32, 1)  # rows x H x W x C
        assert np.array_equal(images[0], images[2])  # same seed, same image
        assert not np.array_equal(images[0], images[1])
        generator.load_state_dict(checkpoint.state_dict)
        expected = generate_images(generator, [7, 8]).permute(0, 2, 3, 1).numpy()
        assert np.array_equal(images[:2], expected)

        truncated = post_json(url, {"dataframe_records": [{"seed": 7, "truncation": 0.5}]})
        assert np.asarray(truncated["predictions"]).shape == (1, 32, 32, 1)

        seeds = {"dataframe_split": {"columns": ["seed"], "data": [[7], [8]]}}
        pngs = post_json(url, {**seeds, "params": {"format": "png"}})["predictions"]
        decoded = [Image.open(io.BytesIO(base64.b64decode(png))) for png in pngs]
        assert [(image.format, image.mode, image.size) for image in decoded] == [("PNG", "L", (32, 32))] * 2
        assert np.array_equal(np.stack([np.asarray(image) for image in decoded]), expected[..., 0])
        # A refused request is a 400 whose message says why, not a stack trace to dig in.
        with pytest.raises(urllib.error.HTTPError) as refused:
            post_json(url, {**seeds, "params": {"format": "jpeg"}})
        assert refused.value.code == 400
        message = json.loads(refused.value.read())["message"]
        assert "Unknown format 'jpeg': choose one of ['array', 'png']" in message
