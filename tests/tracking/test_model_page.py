"""What a reviewer sees of a registered generator: the logged model's metrics and params
(MLflow 3's ``model_id``: its page, ``mlflow.search_logged_models``) and the version's
description, written by :func:`register_generator_version` into a temporary SQLite store."""

from __future__ import annotations

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from atelier.core.models import GeneratorCheckpoint, build_generator
from atelier.tracking.registry import register_generator_version

CONFIG = {"resolution": 16, "channels": 1, "latent_dim": 16, "g_width": 8}
MODEL = "page-generator"
REGISTRATION = {"model_name": MODEL, "min_fid_improvement": 0.5, "on_incompatible_champion": "keep"}
LINEAGE = {"git_commit": "0123abc", "git_dirty": False, "data_version": "md5:5eed.dir",
           "data_hash": "5eed"}
STANDIN = "STAND-IN Inception weights (sha256 ab12...): FID, IS and KID are NOT comparable."


def _scores(fid: float) -> dict:
    return {"fid": fid, "inception_score": 1.5, "inception_score_std": 0.25, "kid": 0.125,
            "kid_std": 0.0625}


def _register(fid: float, champion: dict | None, step: int) -> dict:
    torch.manual_seed(step)
    checkpoint = GeneratorCheckpoint.from_generator(build_generator(CONFIG), step=step)
    metrics = {**_scores(fid), "dims": 64, "num_samples": 20, "champion": champion,
               "inception_weights_sha256": "ab12", "inception_weights_warning": STANDIN}
    with mlflow.start_run(experiment_id=mlflow.set_experiment("model-page").experiment_id):
        return register_generator_version(checkpoint, metrics, LINEAGE, REGISTRATION)


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    """Version 1 (FID 30, no champion: promoted) and version 2 (FID 20, side by side with
    version 1 at 31: promoted)."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path_factory.mktemp('page') / 'mlflow.db'}")
    try:
        first = _register(30.0, None, step=100)
        second = _register(20.0, {"version": "1", **_scores(31.0)}, step=200)
        yield MlflowClient(), first, second
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.mark.slow  # two registered versions
def test_logged_models_rank_by_fid(two_versions):
    _, first, second = two_versions
    experiment = mlflow.get_experiment_by_name("model-page").experiment_id
    ranked = mlflow.search_logged_models(
        experiment_ids=[experiment], filter_string="params.data_version = 'md5:5eed.dir'",
        order_by=[{"field_name": "metrics.fid", "ascending": True}], output_format="list")
    assert [model.source_run_id for model in ranked] == [second["run_id"], first["run_id"]]
    best = ranked[0]
    assert {metric.key: metric.value for metric in best.metrics} == _scores(20.0)
    assert best.params == {"data_version": "md5:5eed.dir", "inception_weights_sha256": "ab12",
                           "inception_weights_warning": STANDIN, "fid_dims": "64",
                           "num_samples": "20", "generator_step": "200", "generator_variant": "ema"}


@pytest.mark.slow  # two registered versions
def test_the_version_description_starts_with_a_summary(two_versions):
    client, first, second = two_versions
    description = client.get_model_version(MODEL, second["version"]).description
    run = client.get_run(second["run_id"]).info
    lines = description.splitlines()
    assert lines[0] == ("**promoted to champion** · FID 20.0000 · KID 0.1250 ± 0.0625 · "
                        "IS 1.5000 ± 0.2500 (STAND-IN Inception weights)")
    assert f"- decision: {second['reason']}" in lines  # the promotion's reason, whole
    assert "beats the champion's 31.0000" in second["reason"]
    assert "- data version: `md5:5eed.dir`" in lines
    assert "- weights: ema generator of step 200" in lines
    assert (f"- model card: [model_card.md](#/experiments/{run.experiment_id}/runs/{run.run_id}"
            f"/artifactPath/model_card.md) (`runs:/{run.run_id}/model_card.md`)") in lines
    assert lines[-1] == f"**WARNING:** {STANDIN}"
    assert client.get_model_version(MODEL, first["version"]).description.startswith(
        "**promoted to champion** · FID 30.0000")
