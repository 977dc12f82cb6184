"""The pyfunc model's ``label`` column (class names in, images of that class out) and its
``format`` parameter (uint8 arrays or base64 PNG files).

Most tests call :class:`GeneratorModel` directly with a stand-in MLflow context; one logs
the model with :func:`log_generator_model` into a temporary SQLite store and loads it back
with ``mlflow.pyfunc.load_model``, so the signature and its enforcement are MLflow's own.
"""

from __future__ import annotations

import base64
import io
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from atelier.core.generate import generate_images
from atelier.core.models import Generator, GeneratorCheckpoint
from atelier.tracking.model import GENERATOR_ARTIFACT, GeneratorModel
from atelier.tracking.registry import generator_signature, log_generator_model

CONFIG = {"resolution": 16, "channels": 1, "latent_dim": 16, "g_width": 8}
CLASSES = ("cat", "dog", "owl")


def _checkpoint(num_classes: int = 3, class_names: tuple[str, ...] = CLASSES,
                channels: int = 1) -> GeneratorCheckpoint:
    torch.manual_seed(0)
    generator = Generator(**{**CONFIG, "channels": channels}, num_classes=num_classes)
    return GeneratorCheckpoint.from_generator(generator, class_names=class_names)


def _model(checkpoint: GeneratorCheckpoint, tmp_path) -> GeneratorModel:
    path = tmp_path / f"{GENERATOR_ARTIFACT}.pt"
    checkpoint.save(path)
    model = GeneratorModel()
    model.load_context(SimpleNamespace(artifacts={GENERATOR_ARTIFACT: str(path)}, model_config={}))
    return model


def _predict(model: GeneratorModel, **columns) -> np.ndarray:
    return model.predict(None, pd.DataFrame(columns))


def _decode_png(encoded: str) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert image.format == "PNG"
    return np.asarray(image)


@pytest.fixture
def conditional(tmp_path) -> GeneratorModel:
    return _model(_checkpoint(), tmp_path)


def test_the_label_picks_the_class_and_the_seed_the_image(conditional):
    images = _predict(conditional, seed=[7, 7, 7, 8], label=["cat", "owl", "cat", "owl"])
    assert images.shape == (4, 16, 16, 1) and images.dtype == np.uint8
    assert not np.array_equal(images[0], images[1])  # same seed, two labels
    assert np.array_equal(images[0], images[2])  # same seed and label, same image
    assert not np.array_equal(images[1], images[3])
    expected = generate_images(conditional.generator, [7, 7], labels=[0, 2])
    assert np.array_equal(images[:2], expected.permute(0, 2, 3, 1).numpy())


def test_without_a_label_the_classes_cycle_with_the_seed(conditional):
    cycled = _predict(conditional, seed=[4, 5, 6])  # 4 % 3 = 1 (dog), 5 -> owl, 6 -> cat
    named = _predict(conditional, seed=[4, 5, 6], label=["dog", "owl", "cat"])
    assert np.array_equal(cycled, named)
    # A null label in one row counts as no label for that row only.
    mixed = _predict(conditional, seed=[4, 5], label=[None, "cat"])
    assert np.array_equal(mixed[0], named[0])
    assert np.array_equal(mixed[1], _predict(conditional, seed=[5], label=["cat"])[0])


def test_an_unknown_label_is_refused_with_the_known_ones(conditional):
    with pytest.raises(ValueError) as error:
        _predict(conditional, seed=[1, 2], label=["dog", "horse"])
    message = str(error.value)
    assert "'horse'" in message and "['cat', 'dog', 'owl']" in message


def test_classes_trained_without_names_are_named_by_their_index(tmp_path):
    model = _model(_checkpoint(class_names=()), tmp_path)
    assert model.class_names == ("0", "1", "2")
    assert np.array_equal(_predict(model, seed=[5], label=["2"]),
                          _predict(model, seed=[5]))  # 5 % 3 = 2
    with pytest.raises(ValueError, match=r"\['0', '1', '2'\]"):
        _predict(model, seed=[3], label=["cat"])


def test_an_unconditional_generator_refuses_a_label(tmp_path):
    model = _model(_checkpoint(num_classes=0, class_names=()), tmp_path)
    assert _predict(model, seed=[1], label=[None]).shape == (1, 16, 16, 1)  # null: no label
    with pytest.raises(ValueError, match="unconditional: it takes no 'label'"):
        _predict(model, seed=[1], label=["cat"])


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (3, "RGB")])
def test_the_png_format_gives_the_pixels_of_the_array_format(tmp_path, channels, mode):
    model = _model(_checkpoint(num_classes=0, class_names=(), channels=channels), tmp_path)
    seeds = pd.DataFrame({"seed": [7, 8]})
    arrays = model.predict(None, seeds)
    assert np.array_equal(model.predict(None, seeds, params={"format": "array"}), arrays)
    encoded = model.predict(None, seeds, params={"format": "png"})
    assert isinstance(encoded, list) and len(encoded) == 2
    assert Image.open(io.BytesIO(base64.b64decode(encoded[0]))).mode == mode
    decoded = np.stack([_decode_png(image) for image in encoded])
    assert np.array_equal(decoded.reshape(arrays.shape), arrays)


def test_an_unknown_format_is_refused_with_the_known_ones(conditional):
    with pytest.raises(ValueError, match=r"Unknown format 'jpeg'.*\['array', 'png'\]"):
        conditional.predict(None, pd.DataFrame({"seed": [1]}), params={"format": "jpeg"})


def test_the_signature_declares_an_optional_label_column():
    # Declared for unconditional models too: a label sent to one must reach the model (and
    # be refused there), not be dropped silently by MLflow's schema enforcement.
    for config in ({**CONFIG, "num_classes": 3}, CONFIG):
        columns = generator_signature(config).inputs.to_dict()
        assert {"name": "label", "type": "string", "required": False} in columns
        assert {"name": "seed", "type": "long", "required": True} in columns
        params = generator_signature(config).params.to_dict()
        assert params == [{"name": "format", "type": "string", "default": "array", "shape": None}]


def test_logged_model_serves_labels_through_mlflow(tmp_path):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        experiment = mlflow.set_experiment("pyfunc-test")
        with mlflow.start_run(experiment_id=experiment.experiment_id):
            info = log_generator_model(_checkpoint(), "atelier-generator")
        model = mlflow.pyfunc.load_model(info.model_uri)
        local = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "model"))
    finally:
        mlflow.set_tracking_uri(previous)

    inputs = {column["name"]: column for column in info.signature.inputs.to_dict()}
    assert inputs["label"] == {"name": "label", "type": "string", "required": False}
    example = mlflow.models.Model.load(local).load_input_example(local)
    assert example["label"].tolist() == ["cat", "owl", "cat"]

    images = model.predict(pd.DataFrame({"seed": [7, 7, 7], "label": ["cat", "owl", "cat"]}))
    assert not np.array_equal(images[0], images[1]) and np.array_equal(images[0], images[2])
    with pytest.raises(Exception, match=r"\['cat', 'dog', 'owl'\]"):
        model.predict(pd.DataFrame({"seed": [7], "label": ["horse"]}))
    # The format parameter passes MLflow's parameter schema.
    encoded = model.predict(pd.DataFrame({"seed": [7], "label": ["owl"]}), params={"format": "png"})
    assert np.array_equal(_decode_png(encoded[0]), images[1][..., 0])
