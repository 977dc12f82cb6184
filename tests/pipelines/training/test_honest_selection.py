"""Honest model selection: the generator kept is not chosen on the numbers the run reports.

The training node's model selection and the evaluation node both score through
``atelier.core.metrics.scoring``; this test records every reference image and every seed
each one handed to the scorer (wrapping the real functions, which still run), then checks
that the evaluation's reported scores come from validation images and seeds that selection
never saw.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from digit_cases import digits

from atelier.core.metrics import SELECTION_SEED_OFFSET, scoring
from atelier.pipelines.evaluation.nodes import evaluate_generator
from atelier.pipelines.training.nodes import train_generator

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def _params(name: str) -> dict:
    return yaml.safe_load((PROJECT_ROOT / f"conf/base/parameters_{name}.yml").read_text())[name]


def _row_keys(images: torch.Tensor) -> set[bytes]:
    return {image.numpy().tobytes() for image in images}


@pytest.mark.slow  # Inception (stand-in) over about 150 images on the CPU
def test_selection_never_sees_the_validation_images_or_seeds_the_run_reports(
        standin_torch_home, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(standin_torch_home))
    torch.set_num_threads(1)
    count = 80
    primary = {"images": digits(range(count)), "is_val": torch.arange(count) % 4 == 0,
               "data_hash": "h" * 64, "resolution": 32, "channels": 1}
    training = {**_params("training"), "max_steps": 20, "eval_every": 10, "eval_samples": 12,
                "g_width": 8, "d_width": 8, "latent_dim": 16, "log_every": 10,
                "sample_every": 0, "checkpoint_every": 0, "device": "cpu", "precision": "fp32",
                "checkpoint_dir": str(tmp_path / "checkpoints")}
    evaluation = {**_params("evaluation"), "num_samples": 16, "fid_dims": 64, "is_splits": 2,
                  "kid_subsets": 5, "kid_subset_size": 10, "device": "cpu",
                  "reference_cache_dir": str(tmp_path / "features")}

    seen: dict[str, dict[str, set]] = {}
    phase = {"name": None}
    real_reference_statistics, real_generate_batches = (scoring.reference_statistics,
                                                        scoring.generate_batches)

    def recording_reference_statistics(reference, inception, config):
        if isinstance(reference, torch.Tensor):
            seen[phase["name"]]["images"] |= _row_keys(reference)
        return real_reference_statistics(reference, inception, config)

    def recording_generate_batches(generator, seeds, *args, **kwargs):
        seen[phase["name"]]["seeds"] |= set(seeds)
        return real_generate_batches(generator, seeds, *args, **kwargs)

    monkeypatch.setattr(scoring, "reference_statistics", recording_reference_statistics)
    monkeypatch.setattr(scoring, "generate_batches", recording_generate_batches)

    phase["name"] = "selection"
    seen["selection"] = {"images": set(), "seeds": set()}
    generator, _, _, _ = train_generator(primary, None, training, evaluation,
                                         training_reporter=None)
    phase["name"] = "evaluation"
    seen["evaluation"] = {"images": set(), "seeds": set()}
    metrics = evaluate_generator(generator, {"version": None}, primary, evaluation)

    selection, reported = seen["selection"], seen["evaluation"]
    # Selection ran (two scorings of both generators) on training images only.
    assert len(selection["images"]) == 12 and len(selection["seeds"]) == 12
    assert selection["images"] <= _row_keys(primary["images"][~primary["is_val"]])
    assert min(selection["seeds"]) == SELECTION_SEED_OFFSET
    # The reported scores: the validation images and the evaluation's seeds...
    assert reported["images"] == _row_keys(primary["images"][primary["is_val"]])
    assert reported["seeds"] == set(range(1_000_000, 1_000_016))
    assert metrics["num_reference"] == 20 and metrics["num_samples"] == 16
    # ...none of which selection saw.
    assert not selection["images"] & reported["images"]
    assert not selection["seeds"] & reported["seeds"]
