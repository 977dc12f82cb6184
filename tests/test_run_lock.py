"""One ``kedro run`` at a time per project folder (src/atelier/hooks/runlock.py)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BIN, run_kedro, test_env, tiny_params
from mlflow.tracking import MlflowClient

from atelier.errors import ProjectBusyError
from atelier.hooks.runlock import LOCK_FILE, ProjectLock

HOLD_LOCK = """
import sys, time
from atelier.hooks.runlock import ProjectLock
lock = ProjectLock(sys.argv[1])
lock.acquire("train")
print("locked", flush=True)
time.sleep(600)
"""


def _start_holder(folder: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.slow  # two kedro processes
def test_a_second_run_is_refused_naming_the_first_and_a_dead_holder_leaves_no_lock(tmp_path):
    holder = _start_holder(tmp_path)
    try:
        with pytest.raises(ProjectBusyError) as refused:
            ProjectLock(tmp_path).acquire("train")
        message = str(refused.value)
        assert f"pid {holder.pid}" in message and "pipeline train" in message
        assert f"kill {holder.pid}" in message and "separate clone" in message
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: no clean-up code runs
        holder.wait()
    # The OS dropped the lock with the process: nothing stale to delete by hand.
    lock = ProjectLock(tmp_path)
    lock.acquire("train")
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pipeline"] == "train"
    lock.release()
    ProjectLock(tmp_path).acquire("evaluation")  # released: free again


def _copy_digits(source: Path, images: Path, per_class: int) -> None:
    for label_dir in sorted(source.iterdir()):
        (images / label_dir.name).mkdir(parents=True)
        for png in sorted(label_dir.iterdir())[:per_class]:
            shutil.copy2(png, images / label_dir.name / png.name)


@pytest.mark.slow
def test_two_concurrent_runs_in_one_folder(kedro_project, sample_images_dir, standin_torch_home,
                                           tmp_path):
    _copy_digits(sample_images_dir, kedro_project / "data" / "01_raw" / "images", 30)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = test_env(MLFLOW_TRACKING_URI=uri, TORCH_HOME=str(standin_torch_home))
    first_params = tiny_params(**{"training.max_steps": 60})
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([str(BIN / "kedro"), "run", "--pipeline=train",
                                  f"--params={first_params}"], cwd=kedro_project, env=env,
                                 stdout=log, stderr=subprocess.STDOUT)
        try:
            lock_file = kedro_project / LOCK_FILE
            deadline = time.monotonic() + 180
            while f'"pid": {first.pid}' not in (lock_file.read_text() if lock_file.exists() else ""):
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-4000:]
                assert time.monotonic() < deadline, "the first run never took the lock"
                time.sleep(0.2)

            # The second run, with other parameters, stops before doing anything.
            second = run_kedro(kedro_project, "run", "--pipeline=train",
                               f"--params={tiny_params(**{'training.g_width': 16})}",
                               env=env, check=False)
            output = second.stdout + second.stderr
            squashed = "".join(output.split())  # Kedro's console wraps long lines
            assert second.returncode != 0
            assert "ProjectBusyError" in squashed and f"pid{first.pid}" in squashed
            assert "Running node" not in output
            assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-4000:]
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("atelier")
    runs = client.search_runs([experiment.experiment_id])
    # The refused run opened no MLflow run (it stopped before kedro-mlflow's hook).
    assert [run.data.params["training.max_steps"] for run in runs] == ["60"]
    assert all(run.info.status == "FINISHED" for run in runs)

    # Once the first is done the folder is free: the second setting now trains, and each
    # registered version's scores are its own run's.
    second_params = tiny_params(**{"training.g_width": 16, "registration.min_fid_improvement": 0})
    run_kedro(kedro_project, "run", "--pipeline=train", f"--params={second_params}", env=env)
    for version in client.search_model_versions("name='atelier-generator'"):
        run = client.get_run(version.run_id)
        assert float(version.tags["fid"]) == pytest.approx(run.data.metrics["fid"])
        assert version.tags["data_hash"] == run.data.tags["data_hash"]
    newest = client.get_model_version("atelier-generator", "2")
    champion = client.get_model_version_by_alias("atelier-generator", "champion")
    # The second version was scored beside the first on the same images and weights: the
    # champion is the better of the two by that side-by-side score.
    beside = float(newest.tags["champion_fid"])
    better = "2" if float(newest.tags["fid"]) <= beside else "1"
    assert str(champion.version) == better  # (SQLite store: an int; REST: a str)
