"""``kedro run --pipeline=train`` against a real ``mlflow server``: tracking and promotion."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import run_kedro, test_env, tiny_params
from mlflow.tracking import MlflowClient

from atelier.tracking.promotion import CHALLENGER, CHAMPION

MODEL = "atelier-generator"
# The tiny set with the default networks (this test checks that training improves FID),
# FID at 64 dims on 100 samples.
SMALL = tiny_params(**{
    "training.g_width": 32, "training.d_width": 32, "training.latent_dim": 64,
    "training.sample_every": 20, "evaluation.num_samples": 100, "evaluation.kid_subsets": 10,
    "evaluation.kid_subset_size": 50, "evaluation.batch_size": 100,
})


def _git_commit_all(project: Path) -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=project, check=True, capture_output=True,
                              text=True).stdout.strip()
    git("init", "-q")
    git("-c", "user.email=t@example.com", "-c", "user.name=test", "add", "conf", "pyproject.toml")
    git("-c", "user.email=t@example.com", "-c", "user.name=test", "commit", "-qm", "project")
    return git("rev-parse", "HEAD")


def _train(project: Path, env: dict, params: str) -> str:
    run_kedro(project, "run", "--pipeline=train", f"--params={SMALL},{params}", env=env)
    runs = MlflowClient(env["MLFLOW_TRACKING_URI"]).search_runs(
        [MlflowClient(env["MLFLOW_TRACKING_URI"]).get_experiment_by_name("atelier").experiment_id],
        order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id


def _check_the_ui(server: str, run, model_id: str) -> None:
    """What a user sees in the MLflow UI (headless Chromium): the run's Datasets panel, and
    the model's FID on the logged model's page, linked to the validation images."""
    from browser import chromium_page

    experiment = run.info.experiment_id
    with chromium_page() as page:
        page.goto(f"{server}/#/experiments/{experiment}/runs/{run.info.run_id}")
        page.get_by_text("images-train").first.wait_for(timeout=120_000)
        assert "Datasets" in page.inner_text("body")
        page.goto(f"{server}/#/experiments/{experiment}/models/{model_id}")
        page.get_by_text("images-validation").first.wait_for(timeout=120_000)
        text = page.inner_text("body")
        assert "fid" in text and "kid" in text and "Datasets used" in text


@pytest.mark.slow
def test_train_is_tracked_registered_and_promoted_on_fid(
    mlflow_server, kedro_project, sample_images_dir, standin_torch_home
):
    images = kedro_project / "data" / "01_raw" / "images"
    for label_dir in sorted(sample_images_dir.iterdir()):
        (images / label_dir.name).mkdir(parents=True)
        for png in sorted(label_dir.iterdir())[:40]:
            shutil.copy2(png, images / label_dir.name / png.name)
    commit = _git_commit_all(kedro_project)
    env = test_env(MLFLOW_TRACKING_URI=mlflow_server, TORCH_HOME=str(standin_torch_home))
    client = MlflowClient(mlflow_server)

    # 1. A trained model: tracked in full, registered, champion (there was none).
    first = client.get_run(_train(kedro_project, env, "training.max_steps=200"))
    params, metrics, tags = first.data.params, first.data.metrics, first.data.tags
    assert params["training.max_steps"] == "200"
    assert params["training.batch_size"] == "64"
    assert params["preprocessing.resolution"] == "32"
    assert params["evaluation.fid_dims"] == "64"
    assert params["registration.model_name"] == MODEL
    for name in ("fid", "inception_score", "inception_score_std", "kid"):
        assert name in metrics, name
    loss_steps = [m.step for m in client.get_metric_history(first.info.run_id, "loss_d")]
    assert loss_steps == list(range(10, 201, 10))
    assert len(client.get_metric_history(first.info.run_id, "images_per_sec")) == 20
    assert tags["git_commit"] == commit and tags["git_dirty"] == "false"
    assert tags["data_version"].startswith("content:") and len(tags["data_hash"]) == 64
    assert tags["seed"] == "0" and tags["kedro_pipeline"] == "train"
    # The run's environment: the venv the `kedro run` subprocess used, this one.
    assert tags["torch_version"] == torch.__version__
    assert tags["cuda_version"] == (torch.version.cuda or "none")
    assert "STAND-IN" in tags["inception_weights_warning"]
    artifacts = {a.path for a in client.list_artifacts(first.info.run_id)}
    for name in ("metrics.json", "generated_samples.png", "real_samples.png", "loss_curve.png",
                 "training_samples.png", "rejected_files.md", "model_card.md", "manifest.parquet",
                 "registration.json", "config"):
        assert name in artifacts, name
    assert "config/parameters.json" in {a.path for a in client.list_artifacts(first.info.run_id, "config")}
    # The run page's Datasets panel: both splits, named by the data version they read.
    inputs = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset
              for i in first.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation"}
    assert {d.digest for d in inputs.values()} == {tags["data_hash"][:32]}
    progress = {a.path for a in client.list_artifacts(first.info.run_id, "images")}
    assert len([p for p in progress if p.endswith(".png")]) == 10  # grids at steps 20, 40, .., 200

    champion = client.get_model_version_by_alias(MODEL, CHAMPION)
    assert champion.version == "1" and champion.run_id == first.info.run_id
    # The version's tags are the run's values: its scores, what they were scored with, its
    # lineage and which weights were registered.
    for name in ("fid", "inception_score", "inception_score_std", "kid", "kid_std"):
        assert float(champion.tags[name]) == metrics[name], name
    for name in ("git_commit", "git_dirty", "data_version", "data_hash", "generator_step",
                 "generator_variant", "inception_weights_sha256", "inception_weights_warning"):
        assert champion.tags[name] == tags[name], name
    assert champion.tags["run_id"] == first.info.run_id
    assert champion.tags["fid_dims"] == params["evaluation.fid_dims"] == "64"
    assert champion.tags["generator_variant"] in ("ema", "raw")
    assert len(champion.tags["inception_weights_sha256"]) == 64
    assert tags["inception_weights_sha256"][:16] in tags["inception_weights_warning"]
    # The decision, on the run and on the version (the description the registry writes).
    reason = f"no champion yet; FID {metrics['fid']:.4f}"
    assert (tags["registration.version"], tags["registration.promoted"],
            tags["registration.reason"]) == ("1", "true", reason)
    description = champion.description.splitlines()
    assert description[0] == (
        f"**promoted to champion** · FID {metrics['fid']:.4f} · KID {metrics['kid']:.4f} ± "
        f"{metrics['kid_std']:.4f} · IS {metrics['inception_score']:.4f} ± "
        f"{metrics['inception_score_std']:.4f} (STAND-IN Inception weights)")
    assert f"- decision: {reason}" in description
    assert f"- data version: `{tags['data_version']}`" in description
    assert (f"- weights: {champion.tags['generator_variant']} generator of step "
            f"{tags['generator_step']}") in description
    assert description[-1] == f"**WARNING:** {tags['inception_weights_warning']}"
    # The model card the run logged says the same.
    card = Path(client.download_artifacts(first.info.run_id, "model_card.md",
                                          str(kedro_project.parent))).read_text().splitlines()
    assert card[:7] == [f"# {MODEL} version 1", "",
                        f"Status at registration: **promoted to champion** — {reason}.", "",
                        f"- run: `{first.info.run_id}`  ", f"- git commit: `{commit}`  ",
                        f"- data version: `{tags['data_version']}`  "]
    for name in ("fid", "inception_score", "inception_score_std", "kid", "kid_std"):
        assert f"| {name} | {metrics[name]} |" in card, name
    assert f"> **WARNING:** {tags['inception_weights_warning']}" in card
    # The version's source is its logged model (the REST API leaves model_id empty here).
    assert champion.source.startswith("models:/m-")
    _check_the_ui(mlflow_server, first, champion.source.removeprefix("models:/"))

    # 2. An untrained model (one step, from scratch): worse FID, challenger only.
    second = client.get_run(_train(kedro_project, env, "training.max_steps=1,training.resume=never,"
                                   "training.checkpoint_dir=data/06_models/untrained"))
    assert second.data.metrics["fid"] > metrics["fid"] + 0.5
    assert client.get_model_version_by_alias(MODEL, CHAMPION).version == "1"
    assert client.get_model_version_by_alias(MODEL, CHALLENGER).version == "2"
    kept, scored = client.get_model_version(MODEL, "2"), second.data.metrics
    assert (kept.tags["champion_version_scored"], float(kept.tags["champion_fid"])) == (
        "1", scored["champion_fid"])
    assert (second.data.tags["registration.version"], second.data.tags["registration.promoted"]) == (
        "2", "false")
    reason = second.data.tags["registration.reason"]
    assert reason.startswith(f"FID {scored['fid']:.4f} does not beat the champion's "
                             f"{scored['champion_fid']:.4f} by min_fid_improvement 0.5 ")
    assert kept.description.startswith(f"**challenger only** · FID {scored['fid']:.4f} · ")
    assert f"- decision: {reason}" in kept.description.splitlines()

    # 3. Training on to step 400 (resumed from the first run's checkpoint): better FID,
    # takes champion (with no margin required); and far better than the untrained model.
    third = client.get_run(_train(kedro_project, env, "training.max_steps=400,"
                                  "registration.min_fid_improvement=0.0"))
    assert [m.step for m in client.get_metric_history(third.info.run_id, "loss_d")][0] == 210
    assert third.data.metrics["fid"] < metrics["fid"]
    # The champion was scored again beside it, with the same settings: its own FID.
    assert third.data.metrics["champion_fid"] == pytest.approx(metrics["fid"])
    assert third.data.metrics["fid"] * 2 < second.data.metrics["fid"]
    assert client.get_model_version_by_alias(MODEL, CHAMPION).version == "3"
    assert client.get_model_version_by_alias(MODEL, CHALLENGER).version == "3"
    promoted = client.get_model_version(MODEL, "3")
    assert promoted.tags["champion_version_scored"] == "1"
    assert float(promoted.tags["fid"]) == third.data.metrics["fid"]
    assert promoted.description.startswith(
        f"**promoted to champion** · FID {third.data.metrics['fid']:.4f} · ")
