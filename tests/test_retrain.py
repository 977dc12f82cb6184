"""scripts/retrain.sh, the scheduled job's steps, against a local DVC remote and a real
``mlflow server``."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT, TINY_TRAIN_PARAMS, test_env
from mlflow.tracking import MlflowClient


@pytest.mark.slow
def test_retrain_script_pulls_trains_registers_and_fails_on_divergence(
    tmp_path, sample_images_dir, standin_torch_home, mlflow_server
):
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(repo)], check=True)
    images = repo / "data" / "01_raw" / "images"
    # The studio's data lives in the remote only: push it there, then leave the clone empty.
    shutil.copytree(sample_images_dir, images)
    remote = tmp_path / "dvc-remote"
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "add", "data/01_raw/images"], cwd=repo, check=True, capture_output=True)
    subprocess.run([*dvc, "remote", "add", "--local", "-d", "seed", str(remote)], cwd=repo, check=True)
    subprocess.run([*dvc, "push", "data/01_raw/images.dvc"], cwd=repo, check=True, capture_output=True)
    (repo / ".dvc" / "config.local").unlink()
    shutil.rmtree(images)
    shutil.rmtree(repo / ".dvc" / "cache")

    summary = tmp_path / "summary.md"
    env = test_env(MLFLOW_TRACKING_URI=mlflow_server, DVC_REMOTE_URL=str(remote),
                   TORCH_HOME=str(standin_torch_home), PYTHON=sys.executable,
                   KEDRO_PARAMS=TINY_TRAIN_PARAMS, GITHUB_STEP_SUMMARY=str(summary))
    result = subprocess.run(["bash", "scripts/retrain.sh"], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert len(list(images.rglob("*.png"))) == 1797  # pulled from the remote
    client = MlflowClient(mlflow_server)
    champion = client.get_model_version_by_alias("atelier-generator", "champion")
    assert champion.version == "1"
    run = client.get_run(champion.run_id)
    assert run.data.params["training.max_steps"] == "20"  # KEDRO_PARAMS over conf/ci
    text = summary.read_text()
    assert "## Atelier retraining" in text and "| fid |" in text and "**promoted to champion**" in text

    # A run whose losses blow up fails the job, and the summary says so.
    diverging = {**env, "KEDRO_PARAMS": TINY_TRAIN_PARAMS + ",training.lr_d=1e30,training.lr_g=1e30,training.resume=never"}
    result = subprocess.run(["bash", "scripts/retrain.sh"], cwd=repo, env=diverging,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode != 0
    assert "diverged" in (result.stdout + result.stderr).lower()
    assert "**Failed**" in summary.read_text()
