"""Evaluation of a class-conditional generator: one grid row per class, scores per class."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from digit_cases import digits

from atelier.core import metrics as core_metrics
from atelier.core.generate import generate_images, image_grid
from atelier.core.metrics import PER_CLASS_MIN_REFERENCE
from atelier.core.models import Generator, GeneratorCheckpoint, load_generator
from atelier.pipelines.evaluation.nodes import draw_sample_grids, evaluate_generator

CONFIG = {"resolution": 32, "channels": 1, "latent_dim": 16, "g_width": 8}
CLASSES = ("a", "b", "c", "rare")


def _primary_images() -> dict:
    """66 digits: 60 in classes a, b, c (10 validation images each), 6 in ``rare`` (3)."""
    count = 66
    labels = torch.tensor([i % 3 for i in range(60)] + [3] * 6, dtype=torch.int64)
    return {"images": digits(range(count)), "is_val": torch.arange(count) % 2 == 0,
            "class_indices": labels, "class_names": list(CLASSES), "resolution": 32, "channels": 1,
            "data_hash": "test", "sha256": [str(i) for i in range(count)],
            "paths": [f"{CLASSES[label]}/{i}.png" for i, label in enumerate(labels.tolist())]}


def _conditional() -> GeneratorCheckpoint:
    torch.manual_seed(0)
    return GeneratorCheckpoint.from_generator(Generator(**CONFIG, num_classes=4),
                                              class_names=CLASSES)


def _evaluation(tmp_path, **overrides) -> dict:
    return {"device": "cpu", "inception_weights": "auto", "num_samples": 20, "fid_dims": 64,
            "is_splits": 2, "kid_subsets": 5, "kid_subset_size": 20, "batch_size": 20,
            "reference_cache_dir": str(tmp_path / "cache"), "seed_offset": 1000, "grid_size": 16,
            **overrides}


def test_generated_grid_has_one_row_per_class(tmp_path):
    checkpoint = _conditional()
    generated, real = draw_sample_grids(checkpoint, _primary_images(), _evaluation(tmp_path))
    # 16 images asked, 4 classes: 4 rows of ceil(16 / 4) = 4 seeds, 32 px, padding 2.
    assert generated.size == (4 * 32 + 5 * 2, 4 * 32 + 5 * 2)
    model = load_generator(checkpoint)
    seeds = [1000, 1001, 1002, 1003]  # the same seeds in every row, rows in class order
    rows = generate_images(model, seeds * 4, labels=[c for c in range(4) for _ in seeds])
    assert np.array_equal(np.asarray(generated), np.asarray(image_grid(rows, columns=4)))
    assert real.size == generated.size

    three = draw_sample_grids(checkpoint, _primary_images(), _evaluation(tmp_path, grid_size=9))[0]
    assert three.size == (3 * 32 + 4 * 2, 4 * 32 + 5 * 2)  # 4 rows of ceil(9 / 4) = 3


def test_unconditional_grid_is_unchanged(tmp_path):
    torch.manual_seed(0)
    checkpoint = GeneratorCheckpoint.from_generator(Generator(**CONFIG))
    generated, _ = draw_sample_grids(checkpoint, _primary_images(), _evaluation(tmp_path))
    expected = image_grid(generate_images(load_generator(checkpoint), range(1000, 1016)))
    assert np.array_equal(np.asarray(generated), np.asarray(expected))


@pytest.mark.slow  # Inception over about 130 images on the CPU
def test_per_class_scores_for_classes_with_enough_validation_images(standin, tmp_path):
    checkpoint = _conditional()
    evaluation = _evaluation(tmp_path)
    metrics = evaluate_generator(checkpoint, {"version": None}, _primary_images(), evaluation)

    assert math.isfinite(metrics["fid"]) and metrics["num_reference"] == 33  # overall, as before
    # "rare" has 3 validation images, under the threshold: left out.
    assert PER_CLASS_MIN_REFERENCE == 10
    assert sorted(metrics["per_class"]) == ["a", "b", "c"]
    for scores in metrics["per_class"].values():
        assert scores["num_reference"] == 10
        assert math.isfinite(scores["fid"]) and math.isfinite(scores["kid"])
    # Class b: 10 images (max(20 // 4, 10)) of label 1 from the evaluation's seeds, against
    # class b's validation images.
    primary = _primary_images()
    real = primary["images"][primary["is_val"] & (primary["class_indices"] == 1)]
    fake = generate_images(load_generator(checkpoint), range(1000, 1010), labels=[1] * 10)
    fake_features = core_metrics.extract_features(standin, [fake], dims=64).features
    real_features = core_metrics.extract_features(standin, [real], dims=64).features
    expected = core_metrics.compute_fid(*core_metrics.feature_statistics(fake_features),
                                        *core_metrics.feature_statistics(real_features))
    assert metrics["per_class"]["b"]["fid"] == expected
    assert metrics["per_class"]["a"]["fid"] != expected

