"""Fine-tuning from the registry, end to end against a real ``mlflow server``
(src/atelier/tracking/parents.py, the training pipeline's fetch_parent_model node, the
lineage on run, version, card and gallery; the torch side is tests/core/training/
test_parent.py).

A model trained on digits 0-4 is registered; a run with
``training.init_from=models:/atelier-generator@champion`` on digits 5-9 starts from its
weights (its step-0 samples are the parent's images for the same seeds), records the
parent, registers and is served; a run from the parent's run id rebuilds it bit for bit.
Then each way a parent can be missing stops before training with what to do.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import make_project_copy, post_json, run_kedro, served_model, test_env, tiny_params
from mlflow.tracking import MlflowClient
from PIL import Image

from atelier.core.errors import ParentModelError
from atelier.core.generate import generate_images, image_grid
from atelier.core.models import load_generator
from atelier.tracking import resolve_parent
from atelier.tracking.reproduce import Drift, compare_parent
from atelier.tracking.versions import connect_registry

MODEL = "atelier-generator"
PER_CLASS = 24
# Tiny networks, a step-0 grid (sample_every), no model selection (the registered generator
# is the EMA of the last step), and the parent's step-0 images compared on 16 seeds.
PARAMS = {"training.sample_every": 10, "training.eval_every": 0}


def _digits(sample_images_dir, destination, labels):
    for label in labels:
        folder = destination / str(label)
        folder.mkdir(parents=True)
        for png in sorted((sample_images_dir / str(label)).iterdir())[:PER_CLASS]:
            shutil.copy2(png, folder / png.name)
    return destination


def _train(project, source, env, **overrides):
    return run_kedro(project, "run", "--pipeline=train", "--params",
                     tiny_params(**{"ingestion.source": str(source), **PARAMS, **overrides}),
                     env=env)


def _runs(client):
    experiment = client.get_experiment_by_name("atelier")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def _step_zero_grid(client, run_id, tmp_path) -> np.ndarray:
    """The image the reporter logged at step 0 (the series ``training_samples``)."""
    names = [item.path for item in client.list_artifacts(run_id, "images")
             if "training_samples" in item.path and "+step+0+" in item.path
             and item.path.endswith(".png")]
    assert len(names) == 1, [item.path for item in client.list_artifacts(run_id, "images")]
    return np.asarray(Image.open(client.download_artifacts(run_id, names[0], str(tmp_path))))


@pytest.mark.slow
def test_fine_tune_from_the_champion_records_its_parent(tmp_path, mlflow_server,
                                                       sample_images_dir, standin_torch_home):
    env = test_env(MLFLOW_TRACKING_URI=mlflow_server, TORCH_HOME=str(standin_torch_home))
    client = MlflowClient(mlflow_server)
    project = make_project_copy(tmp_path / "project")
    low = _digits(sample_images_dir, tmp_path / "low", range(5))
    high = _digits(sample_images_dir, tmp_path / "high", range(5, 10))

    _train(project, low, env)
    (parent_run,) = _runs(client)
    assert parent_run.data.tags["training_state_sha256"]
    assert {a.path for a in client.list_artifacts(parent_run.info.run_id)} >= {
        "training_state.pt", "model_card.md"}

    _train(project, high, env, **{"training.init_from": f"models:/{MODEL}@champion",
                                  "training.checkpoint_dir": str(tmp_path / "finetune")})
    child = _runs(client)[-1]
    tags = child.data.tags
    assert tags["parent_model"] == f"{MODEL} v1"
    assert tags["init_from"] == f"models:/{MODEL}@champion"
    assert tags["parent_run_id"] == parent_run.info.run_id
    assert tags["parent_generator_sha256"] == parent_run.data.tags["generator_sha256"]
    assert tags["parent_training_state_sha256"] == parent_run.data.tags["training_state_sha256"]
    assert tags["parent_data_version"] == parent_run.data.tags["data_version"]

    # It started from the parent: its step-0 samples are the parent's images, same seeds.
    parent = connect_registry(MODEL, mlflow_server).load("1")
    expected = image_grid(generate_images(load_generator(parent.checkpoint), range(16)))
    assert np.array_equal(_step_zero_grid(client, child.info.run_id, tmp_path),
                          np.asarray(expected))

    # The new version, its card and the gallery's line name the parent.
    version = client.get_model_version(MODEL, "2")
    assert version.run_id == child.info.run_id
    assert version.tags["parent_model"] == f"{MODEL} v1"
    assert version.tags["parent_run_id"] == parent_run.info.run_id
    line = f"fine-tuned from {MODEL} v1 (data version {tags['parent_data_version']}"
    assert line in version.description
    card = client.download_artifacts(child.info.run_id, "model_card.md", str(tmp_path))
    assert line in open(card).read()
    versions = connect_registry(MODEL, mlflow_server)
    assert line in versions.describe(versions.load("2"))
    record = json.loads((project / "data/08_reporting/registration.json").read_text())
    assert record["parent"]["version"] == "1"

    # Served like any version.
    with served_model(f"models:/{MODEL}/2", mlflow_server, tmp_path) as url:
        answer = post_json(url, {"dataframe_split": {"columns": ["seed"], "data": [[3]]}})
    child_generator = load_generator(versions.load("2").checkpoint)
    assert np.array_equal(np.asarray(answer["predictions"], dtype=np.uint8)[0],
                          generate_images(child_generator, [3])[0].permute(1, 2, 0).numpy())

    # Reproduce: the very parent, by its run (whatever the alias says now), rebuilds the
    # fine-tune bit for bit on the CPU.
    client.set_registered_model_alias(MODEL, "champion", "2")
    recorded = {"training": {"init_from": f"models:/{MODEL}@champion"}}
    drift = Drift()
    compare_parent(tags, recorded, client, drift)
    assert not drift and recorded["training"]["init_from"] == f"runs:/{parent_run.info.run_id}"
    _train(project, high, env, **{"training.init_from": recorded["training"]["init_from"],
                                  "training.checkpoint_dir": str(tmp_path / "again")})
    again = _runs(client)[-1]
    assert again.data.tags["generator_sha256"] == tags["generator_sha256"]
    assert again.data.tags["parent_training_state_sha256"] == tags["parent_training_state_sha256"]

    # Errors, each before any training, against the same server.
    with pytest.raises(ParentModelError, match="no registered model 'nope'"):
        resolve_parent("models:/nope@champion", client)
    with pytest.raises(ParentModelError, match="alias 'gone' of atelier-generator points nowhere"):
        resolve_parent(f"models:/{MODEL}@gone", client)
    with pytest.raises(ParentModelError, match="has no version 9"):
        resolve_parent(f"models:/{MODEL}/9", client)
    with pytest.raises(ParentModelError, match="run 0123456789abcdef does not exist"):
        resolve_parent("runs:/0123456789abcdef", client)
    not_a_checkpoint = tmp_path / "notes.pt"
    not_a_checkpoint.write_text("not a checkpoint")
    with pytest.raises(ParentModelError, match="not a readable Atelier training state"):
        resolve_parent(str(not_a_checkpoint), client)
    # The parent version's run artifacts deleted (by hand, or by `mlflow gc`):
    (stored,) = (tmp_path / "mlflow-server" / "artifacts").rglob(
        f"{parent_run.info.run_id}/artifacts/training_state.pt")
    stored.unlink()
    with pytest.raises(ParentModelError, match=r"atelier-generator v1 .* has no training_state.pt "
                                               r"artifact .* deleted"):
        resolve_parent(f"models:/{MODEL}/1", client)
    drift = Drift()
    compare_parent(tags, {"training": {}}, client, drift)
    assert drift and "is gone" in drift.differences[0]

    # Through the pipeline: the run stops at its first node and says what to do.
    failed = run_kedro(project, "run", "--pipeline=train", "--params", tiny_params(**{
        "ingestion.source": str(high), "training.init_from": f"models:/{MODEL}@nobody"}),
        env=env, check=False)
    assert failed.returncode != 0
    output = " ".join((failed.stdout + failed.stderr).split())  # the console wraps lines
    assert "the alias 'nobody' of atelier-generator points nowhere" in output
    assert "Running node: train_generator" not in output
