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

from atelier.core.generate import generate_images, latent_vectors
from atelier.core.models import GeneratorCheckpoint, build_generator
from atelier.tracking.registry import CHAMPION, log_generator_model

CONFIG = {"resolution": 32, "channels": 1, "latent_dim": 16, "g_width": 8}


@pytest.mark.slow
def test_served_champion_answers_seeds_with_images(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    torch.manual_seed(0)
    generator = build_generator(CONFIG)
    with torch.no_grad():  # far from DCGAN's almost uniform grey: a changed latent shows
        for weight in generator.parameters():
            if weight.dim() == 4:
                weight.normal_(0, 0.25)
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

        # Truncation redraws the latent's components beyond +-0.5 (core.generate), so seed 7
        # truncated is another image than seed 7, and the one the generator draws from that
        # latent; 0, a negative value or null turn it off, row by row.
        records = [{"seed": 7, "truncation": 0.5}, {"seed": 7, "truncation": 0.0},
                   {"seed": 7, "truncation": -1.0}, {"seed": 7, "truncation": None},
                   {"seed": 8, "truncation": 0.5}]
        truncated = np.asarray(post_json(url, {"dataframe_records": records})["predictions"],
                               dtype=np.uint8)
        assert truncated.shape == (5, 32, 32, 1)
        difference = np.abs(truncated[0].astype(int) - images[0].astype(int)).mean()
        assert difference > 10  # grey levels on average: another picture, not rounding
        latent = latent_vectors([7], CONFIG["latent_dim"], truncation=0.5)
        assert latent.abs().max() <= 0.5
        assert not torch.equal(latent, latent_vectors([7], CONFIG["latent_dim"]))
        expected_truncated = generate_images(generator, [7, 8], truncation=0.5)
        assert np.array_equal(truncated[[0, 4]], expected_truncated.permute(0, 2, 3, 1).numpy())
        assert not np.array_equal(truncated[0], truncated[4])  # still one image per seed
        for untruncated in truncated[1:4]:
            assert np.array_equal(untruncated, expected[0])
        # The same request, the same images.
        again = post_json(url, {"dataframe_records": records})["predictions"]
        assert np.array_equal(np.asarray(again, dtype=np.uint8), truncated)

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
