"""Serve a registered generator with ``mlflow models serve`` and ask it for images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request

import mlflow
import numpy as np
import pytest
import torch
from conftest import BIN, _free_port, test_env, wait_for_http
from mlflow.tracking import MlflowClient

from atelier.core.generate import generate_images
from atelier.core.models import GeneratorCheckpoint, build_generator
from atelier.tracking.registry import CHAMPION, log_generator_model

CONFIG = {"resolution": 32, "channels": 1, "latent_dim": 16, "g_width": 8}


def _post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


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

    port = _free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "models", "serve", "-m", "models:/atelier-generator@champion",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=test_env(MLFLOW_TRACKING_URI=uri), stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server, tmp_path / "serve.log",
                      "mlflow models serve")
        answer = _post(f"http://127.0.0.1:{port}/invocations",
                       {"dataframe_split": {"columns": ["seed"], "data": [[7], [8], [7]]}})
        images = np.asarray(answer["predictions"], dtype=np.uint8)
        assert images.shape == (3, 32, 32, 1)  # rows x H x W x C
        assert np.array_equal(images[0], images[2])  # same seed, same image
        assert not np.array_equal(images[0], images[1])
        generator.load_state_dict(checkpoint.state_dict)
        expected = generate_images(generator, [7, 8]).permute(0, 2, 3, 1).numpy()
        assert np.array_equal(images[:2], expected)

        truncated = _post(f"http://127.0.0.1:{port}/invocations", {"dataframe_records": [
            {"seed": 7, "truncation": 0.5}]})
        assert np.asarray(truncated["predictions"]).shape == (1, 32, 32, 1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
