"""A promotion you can trust: the champion is scored side by side with the candidate.

Real ``kedro run --pipeline=train`` runs on digit subsets, registering into one MLflow
store, with the stand-in Inception weights. Each test changes what would make a stored
FID incomparable (the data version, ``num_samples``, ``fid_dims``, the resolution) and
checks that the decision is made on the two numbers of one evaluation.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_project_copy, run_kedro, test_env, tiny_params
from mlflow.tracking import MlflowClient

MODEL = "atelier-generator"


def _use_digits(project: Path, sample_images_dir: Path, labels: str, per_label: int = 60) -> None:
    """Make the project's images the first ``per_label`` digits of each of ``labels``."""
    images = project / "data/01_raw/images"
    shutil.rmtree(images, ignore_errors=True)
    for label in labels:
        (images / label).mkdir(parents=True)
        for path in sorted((sample_images_dir / label).glob("*.png"))[:per_label]:
            shutil.copy2(path, images / label / path.name)


def _train(project: Path, env: dict, **overrides) -> tuple[dict, dict]:
    run_kedro(project, "run", "--pipeline=train", f"--params={tiny_params(**overrides)}", env=env)
    reports = project / "data/08_reporting"
    return (json.loads((reports / "metrics.json").read_text()),
            json.loads((reports / "registration.json").read_text()))


@pytest.fixture
def promotion_project(tmp_path, standin_torch_home):
    project = make_project_copy(tmp_path / "project")
    env = test_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                   TORCH_HOME=str(standin_torch_home))
    return project, env, MlflowClient(env["MLFLOW_TRACKING_URI"])


def _assert_decided_side_by_side(client: MlflowClient, metrics: dict, record: dict,
                                 margin: float = 0.5) -> None:
    champion = metrics["champion"]
    assert champion["version"] == "1"
    assert record["promote"] is (metrics["fid"] <= champion["fid"] - margin)
    assert f"{metrics['fid']:.4f}" in record["reason"]
    assert f"{champion['fid']:.4f}" in record["reason"] and "side by side" in record["reason"]
    version = client.get_model_version(MODEL, str(record["version"]))
    assert float(version.tags["champion_fid"]) == champion["fid"]
    assert version.tags["champion_version_scored"] == "1"
    assert record["reason"] in version.description
    run = client.get_run(record["run_id"])
    assert run.data.metrics["champion_fid"] == pytest.approx(champion["fid"])
    assert run.data.metrics["fid"] == pytest.approx(metrics["fid"])
    expected = str(record["version"]) if record["promote"] else "1"
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == expected


@pytest.mark.slow
def test_new_data_version_scores_the_champion_again_on_it(promotion_project, sample_images_dir):
    project, env, client = promotion_project
    _use_digits(project, sample_images_dir, "01234")
    first, registered = _train(project, env)
    assert registered["promote"] and first["champion"] is None
    stored = float(client.get_model_version(MODEL, "1").tags["fid"])
    assert stored == pytest.approx(first["fid"])

    _use_digits(project, sample_images_dir, "56789")  # a new data version, other digits
    second, record = _train(project, env)
    # The champion, trained on 0-4, scored again on the 5-9 validation images: another
    # number than its stored FID, and the one the decision uses.
    assert second["champion"]["fid"] != stored
    _assert_decided_side_by_side(client, second, record)


@pytest.mark.slow
def test_other_num_samples_and_fid_dims_score_the_champion_with_the_same_ones(
        promotion_project, sample_images_dir):
    project, env, client = promotion_project
    _use_digits(project, sample_images_dir, "0123456789", per_label=30)
    first, _ = _train(project, env)
    assert (first["num_samples"], first["dims"]) == (20, 64)
    stored = float(client.get_model_version(MODEL, "1").tags["fid"])

    second, record = _train(project, env, **{"evaluation.num_samples": 30,
                                             "evaluation.fid_dims": 192,
                                             "training.seed": 1})
    assert (second["num_samples"], second["dims"]) == (30, 192)
    # FID-192 on 30 samples is another number than the stored FID-64 on 20 samples.
    assert second["champion"]["fid"] != stored
    _assert_decided_side_by_side(client, second, record)


@pytest.mark.slow
def test_a_champion_at_another_resolution_follows_the_policy(promotion_project,
                                                            sample_images_dir):
    project, env, client = promotion_project
    _use_digits(project, sample_images_dir, "0123456789", per_label=30)
    _train(project, env)  # 32 x 32: version 1, champion

    kept, record = _train(project, env, **{"preprocessing.resolution": 64})
    assert kept["champion"]["version"] == "1" and "fid" not in kept["champion"]
    assert "(1, 32, 32)" in kept["champion"]["incompatible"]
    assert not record["promote"] and "on_incompatible_champion=keep" in record["reason"]
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert client.get_model_version(MODEL, "2").tags["champion_incompatible"]

    _, record = _train(project, env, **{"preprocessing.resolution": 64,
                                        "registration.on_incompatible_champion": "promote"})
    assert record["promote"] and "on_incompatible_champion=promote" in record["reason"]
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "3"
