"""The evaluation pipeline, run for real (``kedro run --pipeline=evaluation``) on a project copy.

Inputs are written directly: a small ``primary_images`` of digits and an untrained generator
(``atelier.core.models``). Inception is the session's stand-in (``standin_torch_home``).
"""

from __future__ import annotations

import hashlib
import json
import math
import urllib.error

import pytest
import torch
from conftest import run_kedro
from digit_cases import digits
from PIL import Image

from atelier.core.models import Generator, GeneratorCheckpoint
from atelier.errors import InceptionWeightsNotFoundError
from atelier.pipelines.evaluation.nodes import evaluate_generator

GENERATOR_CONFIG = {"resolution": 32, "channels": 1, "latent_dim": 16, "g_width": 8}
# Small counts: CPU Inception is slow. dims 64 keeps the covariances non-singular-ish.
PARAMS = ("evaluation.num_samples=20,evaluation.fid_dims=64,evaluation.is_splits=2,"
          "evaluation.kid_subsets=10,evaluation.kid_subset_size=20,evaluation.batch_size=20,"
          "evaluation.grid_size=16,evaluation.device=cpu")


def _primary_images(count: int = 60) -> dict:
    images = digits(range(count))
    is_val = torch.arange(count) % 2 == 0
    return {"images": images, "is_val": is_val, "resolution": 32, "channels": 1,
            "data_hash": "test", "sha256": [str(i) for i in range(count)],
            "paths": [f"{i}.png" for i in range(count)]}


def _generator() -> GeneratorCheckpoint:
    torch.manual_seed(0)
    return GeneratorCheckpoint.from_generator(Generator(**GENERATOR_CONFIG))


@pytest.mark.slow
def test_evaluation_writes_metrics_and_grids_and_reuses_reference_statistics(
        kedro_project, standin_torch_home, shared_tracking_env):
    torch.save(_primary_images(), kedro_project / "data/03_primary/images.pt")
    _generator().save(kedro_project / "data/06_models/generator.pt")
    env = {**shared_tracking_env, "TORCH_HOME": str(standin_torch_home)}

    first = run_kedro(kedro_project, "run", "--pipeline=evaluation", f"--params={PARAMS}", env=env)
    metrics = json.loads((kedro_project / "data/08_reporting/metrics.json").read_text())

    weights = standin_torch_home / "hub/checkpoints/pt_inception-2015-12-05-6726825d.pth"
    assert metrics["inception_weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert "STAND-IN" in metrics["inception_weights_warning"]
    assert "STAND-IN" in first.stdout + first.stderr  # loud in the log too
    assert (metrics["num_samples"], metrics["num_reference"], metrics["dims"]) == (20, 30, 64)
    for key in ("fid", "inception_score", "inception_score_std", "kid", "kid_std"):
        assert math.isfinite(metrics[key]), key
    assert metrics["fid"] > 0 and metrics["inception_score"] >= 1.0
    assert "per_class" not in metrics  # unconditional generator
    assert len(list((kedro_project / "data/04_feature").glob("reference-*.npz"))) == 1

    for name in ("generated_samples.png", "real_samples.png"):
        with Image.open(kedro_project / "data/08_reporting" / name) as grid:
            assert grid.size == (4 * 32 + 5 * 2, 4 * 32 + 5 * 2)  # 16 images, 4 x 4, padding 2

    second = run_kedro(kedro_project, "run", "--pipeline=evaluation", f"--params={PARAMS}", env=env)
    assert "Reference statistics reused" in second.stdout + second.stderr
    assert json.loads((kedro_project / "data/08_reporting/metrics.json").read_text()) == metrics


def test_official_weights_missing_stop_evaluation_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))

    def refuse(url, destination, *args, **kwargs):  # the download fails on purpose
        raise urllib.error.URLError("download refused by the test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)

    class Untouchable(dict):
        def __getitem__(self, key):
            raise AssertionError(f"evaluation read {key!r} before checking the weights")

    evaluation = {"device": "cpu", "inception_weights": "official", "num_samples": 10,
                  "fid_dims": 64, "is_splits": 2, "kid_subsets": 2, "kid_subset_size": 5,
                  "batch_size": 5, "reference_cache_dir": str(tmp_path / "cache"),
                  "seed_offset": 0, "grid_size": 4}
    with pytest.raises(InceptionWeightsNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        evaluate_generator(Untouchable(), Untouchable(), Untouchable(), evaluation)
    assert not (tmp_path / "cache").exists()  # official never builds a stand-in
