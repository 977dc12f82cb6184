"""The team deployment, as README "Deploying for a team" sets it up: an ``mlflow server``
with a PostgreSQL backend store and an S3 artifact store, a DVC remote on the same object
store, and scheduled retraining (scripts/retrain.sh) in two clones at once.

Everything runs on 127.0.0.1 (tests/team_stack.py): the machine's PostgreSQL server
binaries and moto's S3-compatible server. The two retraining jobs race: both train,
evaluate and register into the same registry; one is clearly worse (trained for one step).
The registry must end with one champion, the better by the side-by-side FID.
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, stop_process_group, test_env, tiny_params
from mlflow.tracking import MlflowClient
from team_stack import S3_CREDENTIALS, TeamStack, team_stack

MODEL = "atelier-generator"
IMAGES = Path("data/01_raw/images")
DVC = [sys.executable, "-m", "dvc"]
# Same data and evaluation settings, so the two are scored side by side: the networks of
# tests/tracking/test_mlflow_tracking.py, FID at 64 dims on 100 samples, the last generator (no
# model selection, to save time). The worse one stops after one step (an untrained
# generator, but a finite FID: its job still passes).
SCORED = {"training.g_width": 32, "training.d_width": 32, "training.latent_dim": 64,
          "training.eval_every": 0,
          "evaluation.num_samples": 100, "evaluation.kid_subsets": 10,
          "evaluation.kid_subset_size": 50, "evaluation.batch_size": 100}
RACERS = {
    "better": tiny_params(**SCORED, **{"training.max_steps": 200}),
    "worse": tiny_params(**SCORED, **{"training.max_steps": 1}),
}

# 40 images a class (400 in all, 80 held out): evaluation stays short, and the remote
# still holds a real dataset version.
PER_CLASS = 40


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def _dvc(repo: Path, *args: str, env: dict[str, str]) -> None:
    result = subprocess.run([*DVC, *args], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


def _studio_repository(repo: Path, sample_images: Path, stack: TeamStack, env: dict[str, str]) -> None:
    """A clone of the project whose images live in the team's DVC remote, which its
    committed .dvc/config names (with the object store's endpoint; credentials stay in
    the environment)."""
    _git(repo.parent, "clone", "-q", str(PROJECT_ROOT), str(repo))
    shutil.copytree(sample_images, repo / IMAGES)
    _dvc(repo, "add", str(IMAGES), env=env)
    _dvc(repo, "remote", "add", "--default", "team", stack.dvc_remote, env=env)
    _dvc(repo, "remote", "modify", "team", "endpointurl", stack.s3_endpoint, env=env)
    _git(repo, "add", ".dvc/config", "data/01_raw")
    _git(repo, "-c", "user.name=Atelier test", "-c", "user.email=test@atelier.invalid",
         "commit", "-q", "-m", "Images in the team's DVC remote")
    _dvc(repo, "push", env=env)


def _race(jobs: dict[str, Path], env: dict[str, str], logs: Path) -> None:
    """Run scripts/retrain.sh in each clone at once, with its racer's parameters; the
    job summaries go to ``logs/<name>.md``."""
    running = {}
    try:
        for name, clone in jobs.items():
            with open(logs / f"{name}.log", "w") as log:
                running[name] = subprocess.Popen(
                    ["bash", "scripts/retrain.sh"], cwd=clone, stdout=log, stderr=subprocess.STDOUT,
                    env={**env, "KEDRO_PARAMS": RACERS[name],
                         "GITHUB_STEP_SUMMARY": str(logs / f"{name}.md")},
                    start_new_session=True)
        for name, job in running.items():
            job.wait(timeout=900)
            assert job.returncode == 0, f"{name}:\n{(logs / f'{name}.log').read_text()[-6000:]}"
    finally:
        for job in running.values():
            if job.poll() is None:
                stop_process_group(job)


def _same_images(restored: Path, original: Path) -> bool:
    names = sorted(path.relative_to(original) for path in original.rglob("*.png"))
    if sorted(path.relative_to(restored) for path in restored.rglob("*.png")) != names:
        return False
    return all(filecmp.cmp(restored / name, original / name, shallow=False) for name in names)


def _artifact_files(client: MlflowClient, run_id: str, path: str | None = None) -> dict[str, int]:
    files = {}
    for item in client.list_artifacts(run_id, path):
        files.update(_artifact_files(client, run_id, item.path) if item.is_dir
                     else {item.path: item.file_size})
    return files


def _database_rows(database_url: str, query: str) -> list[tuple]:
    import psycopg2

    connection = psycopg2.connect(database_url.replace("postgresql+psycopg2://", "postgresql://"))
    try:
        with connection.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetchall()
    finally:
        connection.close()


@pytest.mark.slow
def test_team_deployment_races_two_retrainings_to_one_champion(tmp_path, sample_images_dir,
                                                               standin_torch_home):
    images = tmp_path / "images"
    for label in sorted(sample_images_dir.iterdir()):
        (images / label.name).mkdir(parents=True)
        for png in sorted(label.iterdir())[:PER_CLASS]:
            shutil.copy2(png, images / label.name / png.name)
    count = len(list(images.rglob("*.png")))
    with team_stack(tmp_path / "stack") as stack:
        # Only DVC talks to the object store from the clients: MLflow artifacts go through
        # the server, so no MLFLOW_S3_ENDPOINT_URL here (a direct upload would miss).
        # One thread per job: two jobs with torch's default of one thread per core, on the
        # same cores, spin against each other and train several times slower.
        env = test_env(MLFLOW_TRACKING_URI=stack.tracking_uri, TORCH_HOME=str(standin_torch_home),
                       PYTHON=sys.executable, OMP_NUM_THREADS="1", **S3_CREDENTIALS)
        env.pop("DVC_REMOTE_URL", None)  # the committed remote, as a team's CI uses it
        studio = tmp_path / "studio"
        _studio_repository(studio, images, stack, env)

        jobs = {name: tmp_path / name for name in RACERS}
        for clone in jobs.values():
            _git(tmp_path, "clone", "-q", str(studio), str(clone))
        _race(jobs, env, tmp_path)

        client = MlflowClient(stack.tracking_uri)
        records = {name: _read_json(clone / "data/08_reporting/registration.json")
                   for name, clone in jobs.items()}
        versions = {str(record["version"]): name for name, record in records.items()}
        assert len(versions) == 2
        assert {v.version for v in client.search_model_versions(f"name='{MODEL}'")} == set(versions)

        # One champion, the better of the two side by side. The first to decide found no
        # champion; the second was scored side by side with it (again, if it took the
        # champion alias while the second was evaluating) and decided on those two numbers.
        first, second = sorted(records.values(), key=lambda record: record["champion"] is not None)
        assert first["champion"] is None and first["promote"]
        assert str(second["champion"]["version"]) == str(first["version"])
        second_fid = _read_json(jobs[versions[str(second["version"])]]
                                / "data/08_reporting/metrics.json")["fid"]
        best = str(second["version"] if second_fid < second["champion"]["fid"] else first["version"])
        champions = [version for version in versions
                     if "champion" in client.get_model_version(MODEL, version).aliases]
        assert champions == [best]
        assert versions[best] == "better", (first, second, second_fid)  # clearly better, by design
        assert abs(second_fid - second["champion"]["fid"]) > 0.5  # a decision, not a coin toss
        tags = client.get_model_version(MODEL, str(second["version"])).tags
        assert tags["champion_version_scored"] == str(first["version"])
        assert float(tags["champion_fid"]) == second["champion"]["fid"]
        assert float(tags["fid"]) == second_fid
        # The promotion lock is released, and the reports say what happened.
        assert [m.name for m in client.search_registered_models()] == [MODEL]
        for name in jobs:
            assert "| fid |" in (tmp_path / f"{name}.md").read_text()
        assert "**promoted to champion**" in (tmp_path / f"{versions[best]}.md").read_text()

        # The tracking server keeps runs and versions in PostgreSQL.
        run_ids = {record["run_id"] for record in records.values()}
        assert run_ids <= {row[0] for row in _database_rows(stack.database_url, "SELECT run_uuid FROM runs")}
        assert sorted(row[0] for row in _database_rows(
            stack.database_url, f"SELECT version FROM model_versions WHERE name = '{MODEL}'")) \
            == sorted(int(version) for version in versions)

        # Every artifact is in the bucket, uploaded through the server: each run's files
        # (metrics, grids, model card, ...) and each registered model's files.
        objects = stack.bucket_objects("mlflow/")
        for name, record in records.items():
            run = client.get_run(record["run_id"])
            prefix = run.info.artifact_uri.replace("mlflow-artifacts:/", "mlflow/") + "/"
            files = _artifact_files(client, record["run_id"])
            assert {"metrics.json", "model_card.md"} <= {Path(path).name for path in files}, files
            assert any(path.endswith(".png") for path in files), files
            assert {prefix + path: size for path, size in files.items()}.items() <= objects.items()
            model_uri = client.get_model_version_download_uri(MODEL, str(record["version"]))
            model_prefix = model_uri.replace("mlflow-artifacts:/", "mlflow/").rstrip("/") + "/"
            model_files = {key for key in objects if key.startswith(model_prefix)}
            assert {model_prefix + "MLmodel", model_prefix + "artifacts/generator.pt"} <= model_files, model_files
            assert not (jobs[name] / "mlruns").exists()  # nothing fell back to local files

        # The images: in the remote, and `dvc pull` in a fresh clone restores them.
        assert len(stack.bucket_objects("dvc/")) > count
        for name, clone in jobs.items():  # retrain.sh pulled them there
            assert len(list((clone / IMAGES).rglob("*.png"))) == count, name
        fresh = tmp_path / "fresh"
        _git(tmp_path, "clone", "-q", str(studio), str(fresh))
        _dvc(fresh, "pull", str(IMAGES) + ".dvc", env=env)
        assert _same_images(fresh / IMAGES, images)


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text())
