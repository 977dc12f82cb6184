"""``python -m atelier.reproduce RUN_ID``: bit-identical re-run, and data drift reported."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT, TINY_TRAIN_PARAMS, run_kedro, test_env
from mlflow.tracking import MlflowClient


@pytest.mark.slow
def test_reproduce_matches_bit_for_bit_then_reports_a_changed_image(
    tmp_path, sample_images_dir, standin_torch_home
):
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(repo)], check=True)
    images = repo / "data" / "01_raw" / "images"
    shutil.copytree(sample_images_dir, images)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = test_env(MLFLOW_TRACKING_URI=uri, TORCH_HOME=str(standin_torch_home))
    run_kedro(repo, "run", "--pipeline=train", f"--params={TINY_TRAIN_PARAMS}", env=env)
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("atelier").experiment_id])[0]
    assert run.data.tags["data_version"].startswith("dvc:")  # the sample is DVC-tracked

    def reproduce():
        return subprocess.run([sys.executable, "-m", "atelier.reproduce", run.info.run_id],
                              cwd=repo, env=env, capture_output=True, text=True, timeout=900)

    result = reproduce()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bit-exact comparison" in result.stdout
    assert f"recorded {run.data.tags['generator_sha256']}" in result.stdout
    assert f"re-run   {run.data.tags['generator_sha256']}" in result.stdout
    assert f"Reproduced run {run.info.run_id}." in result.stdout
    reruns = client.search_runs([run.info.experiment_id],
                                filter_string=f"tags.reproduces = '{run.info.run_id}'")
    assert len(reruns) == 1
    assert reruns[0].data.metrics["fid"] == run.data.metrics["fid"]

    # One image edited: reproduce names it and the commands, and runs nothing.
    changed = images / "7" / sorted(p.name for p in (images / "7").iterdir())[0]
    shutil.copy2(next((images / "1").iterdir()), changed)
    result = reproduce()
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"data/01_raw/images/7/{changed.name} changed" in result.stdout
    assert "dvc checkout data/01_raw/images.dvc" in result.stdout
    assert len(client.search_runs([run.info.experiment_id])) == 2  # no third run
