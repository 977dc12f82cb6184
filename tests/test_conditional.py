"""Class-conditional generation end to end: classes from folders, a conditional model
trained by ``kedro run --pipeline=train``, registered, and served with a ``label`` column."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import (
    make_project_copy,
    post_json,
    run_kedro,
    served_model,
    test_env,
    tiny_params,
)
from mlflow.tracking import MlflowClient
from PIL import Image

from atelier.pipelines.training.nodes import check_classes
from atelier.tracking.registry import ModelRegistry

DIGITS = list("0123456789")
IMAGES_PER_DIGIT = 40


def _primary(paths: list[str], is_val: list[bool]) -> dict:
    class_names = sorted({path.partition("/")[0] if "/" in path else "" for path in paths})
    labels = [class_names.index(path.partition("/")[0] if "/" in path else "") for path in paths]
    return {"paths": paths, "class_names": class_names, "is_val": torch.tensor(is_val),
            "class_indices": torch.tensor(labels, dtype=torch.int64)}


def test_images_outside_class_folders_are_named_with_the_fix():
    paths = ["a/1.png", "b/2.png", *(f"loose{i}.png" for i in range(7))]
    with pytest.raises(ValueError) as error:
        check_classes(_primary(paths, [False] * len(paths)))
    message = str(error.value)
    assert "7 images are directly in the source folder" in message
    assert "loose0.png, loose1.png, loose2.png, loose3.png, loose4.png and 2 more" in message
    assert "move each image into a folder named after its class" in message
    assert "training.conditional=false" in message


def test_conditional_training_needs_two_classes_each_with_training_images():
    with pytest.raises(ValueError, match=r"at least two classes .* found 1: \['a'\]"):
        check_classes(_primary(["a/1.png", "a/2.png"], [False, False]))
    with pytest.raises(ValueError, match=r"classes \['b'\] have no training image"):
        check_classes(_primary(["a/1.png", "b/2.png"], [False, True]))
    with pytest.raises(ValueError,
                       match="primary_images has no class_indices.*data_ingestion,preprocessing"):
        check_classes({"images": torch.zeros(1), "is_val": torch.tensor([False])})
    check_classes(_primary(["a/1.png", "b/2.png", "b/3.png"], [False, False, True]))  # fine


@pytest.mark.slow
def test_conditional_digits_train_register_and_serve_by_label(
        tmp_path, sample_images_dir, standin_torch_home):
    project = make_project_copy(tmp_path / "project")
    images = project / "data" / "01_raw" / "images"
    for digit in DIGITS:
        (images / digit).mkdir(parents=True)
        for png in sorted((sample_images_dir / digit).glob("*.png"))[:IMAGES_PER_DIGIT]:
            shutil.copy2(png, images / digit / png.name)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = test_env(MLFLOW_TRACKING_URI=uri, TORCH_HOME=str(standin_torch_home))
    params = tiny_params(**{"training.conditional": True})
    run_kedro(project, "run", "--pipeline=train", f"--params={params}", env=env)

    manifest = pd.read_parquet(project / "data/02_intermediate/manifest.parquet")
    assert len(manifest) == 10 * IMAGES_PER_DIGIT
    assert manifest["label"].tolist() == [path.split("/")[0] for path in manifest["path"]]
    assert sorted(set(manifest["label"])) == DIGITS
    # Grids: one row per class (10 rows of 32 px, padding 2), ceil(grid_size / 10) seeds
    # each; training's grid and the evaluation's both have evaluation.grid_size (16) images.
    reporting = project / "data/08_reporting"
    with Image.open(reporting / "training_samples.png") as grid:  # grid_size 16: 2 columns
        assert grid.size == (2 * 32 + 3 * 2, 10 * 32 + 11 * 2)
    with Image.open(reporting / "generated_samples.png") as grid:  # grid_size 16: 2 columns
        assert grid.size == (2 * 32 + 3 * 2, 10 * 32 + 11 * 2)
    metrics = json.loads((reporting / "metrics.json").read_text())
    # Only classes with at least 10 validation images are scored alone (here: a few).
    assert metrics["per_class"] and set(metrics["per_class"]) <= set(DIGITS)
    assert all(scores["num_reference"] >= 10 for scores in metrics["per_class"].values())

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)  # models:/ URIs resolve against the global registry URI
    try:
        registered = ModelRegistry(MlflowClient(uri)).version("atelier-generator", "1").generator
        signature = mlflow.models.get_model_info("models:/atelier-generator/1").signature
    finally:
        mlflow.set_tracking_uri(previous)
    assert registered.class_names == tuple(DIGITS) and registered.config["num_classes"] == 10
    assert "label" in signature.inputs.input_names()

    with served_model("models:/atelier-generator/1", uri, tmp_path) as url:
        answer = post_json(url, {"dataframe_split": {"columns": ["seed", "label"],
                                                 "data": [[7, "3"], [7, "8"], [7, "3"]]}})
        served = np.asarray(answer["predictions"], dtype=np.uint8)
        assert served.shape == (3, 32, 32, 1)
        assert not np.array_equal(served[0], served[1])  # same seed, two labels
        assert np.array_equal(served[0], served[2])  # same seed and label

        with pytest.raises(urllib.error.HTTPError) as refused:
            post_json(url, {"dataframe_records": [{"seed": 7, "label": "cat"}]})
        assert refused.value.code == 400
        body = refused.value.read().decode()
        assert "Unknown label(s) ['cat']" in body and str(DIGITS) in body, body[-3000:]
