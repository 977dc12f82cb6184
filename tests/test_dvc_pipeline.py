"""``dvc repro`` runs the Kedro pipelines as stages, once, then only what changed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT, TINY_PARAMS, test_env

SMALL = {"parameters_training.yml": {"training": TINY_PARAMS["training"]},
         "parameters_evaluation.yml": {"evaluation": TINY_PARAMS["evaluation"]}}


def _set_params(repo: Path, file: str, updates: dict) -> None:
    path = repo / "conf" / "base" / file
    params = yaml.safe_load(path.read_text())
    for section, values in updates.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _dvc(repo: Path, env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    return result.stdout


def _stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([a-z_]+)'", output))


@pytest.mark.slow
def test_dvc_repro_runs_every_stage_once_then_only_what_changed(
    tmp_path, sample_images_dir, standin_torch_home
):
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(repo)], check=True)
    shutil.copytree(sample_images_dir, repo / "data" / "01_raw" / "images")
    for file, updates in SMALL.items():
        _set_params(repo, file, updates)
    env = test_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                   TORCH_HOME=str(standin_torch_home), GIT_AUTHOR_NAME="test",
                   GIT_AUTHOR_EMAIL="test@example.com", GIT_COMMITTER_NAME="test",
                   GIT_COMMITTER_EMAIL="test@example.com")

    first = _dvc(repo, env, "repro")
    assert _stages_run(first) == {"data_ingestion", "preprocessing", "training", "evaluation",
                                  "registration"}
    metrics = json.loads((repo / "data/08_reporting/metrics.json").read_text())
    assert metrics["num_samples"] == TINY_PARAMS["evaluation"]["num_samples"] and metrics["dims"] == 64

    second = _dvc(repo, env, "repro")
    assert _stages_run(second) == set()
    assert "up to date" in second

    # Every stage depends on the whole package: a change under core/ makes them all stale.
    models = repo / "src/atelier/core/models.py"
    original = models.read_text()
    models.write_text(original + "\n# a code change\n")
    status = _dvc(repo, env, "status")
    assert set(re.findall(r"^([a-z_]+):", status, flags=re.MULTILINE)) == {
        "data_ingestion", "preprocessing", "training", "evaluation", "registration"}
    assert "src/atelier" in status
    models.write_text(original)
    assert "up to date" in _dvc(repo, env, "status")

    _set_params(repo, "parameters_training.yml", {"training": {"max_steps": 30}})
    third = _dvc(repo, env, "repro")
    assert _stages_run(third) == {"training", "evaluation", "registration"}
    assert "fid" in _dvc(repo, env, "metrics", "show")

    # A parameter sweep: `dvc exp run --set-param`, and `dvc exp show` lists FID per experiment.
    subprocess.run(["git", "add", "-A"], cwd=repo, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "small parameters"], cwd=repo, env=env, check=True)
    for steps in (25, 35):
        _dvc(repo, env, "exp", "run", "--name", f"steps-{steps}", "--set-param",
             f"conf/base/parameters_training.yml:training.max_steps={steps}")
    shown = json.loads(_dvc(repo, env, "exp", "show", "--json"))
    experiments = {exp["name"]: exp for commit in shown for exp in commit.get("experiments") or []}
    assert set(experiments) >= {"steps-25", "steps-35"}
    for name, exp in experiments.items():
        data = exp["revs"][0]["data"]
        params = data["params"]["conf/base/parameters_training.yml"]["data"]["training"]
        assert params["max_steps"] == int(name.split("-")[1])
        fid = data["metrics"]["data/08_reporting/metrics.json"]["data"]["fid"]
        assert isinstance(fid, float) and fid > 0
