"""Evaluation nodes: the trained generator and the validation split in, metrics and grids out.

The metrics themselves (Inception features, FID, IS, KID, the reference-statistics cache)
live in :mod:`atelier.core.metrics`; these nodes only rebuild the generator, pick the
validation images and the seeds, and hand them over.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from PIL import Image
from torch import nn

from atelier.core import metrics as core_metrics
from atelier.core.generate import generate_images, image_grid
from atelier.core.models import GeneratorCheckpoint, load_generator


def _validation_images(primary_images: dict) -> torch.Tensor:
    images = primary_images["images"][primary_images["is_val"]]
    if len(images) < 2:
        raise ValueError(
            f"The validation split holds {len(images)} image(s); FID needs at least 2. Add images "
            "or raise preprocessing.val_fraction in conf/base/parameters_preprocessing.yml."
        )
    return images


def _seeds(evaluation: dict, count: int) -> range:
    return range(evaluation["seed_offset"], evaluation["seed_offset"] + count)


def _generated_batches(model: nn.Module, seeds: Sequence[int], batch_size: int,
                       device: torch.device) -> Iterator[torch.Tensor]:
    # Batch by batch, so only one batch of generated images is held at a time (uint8, on
    # the device: quantised as saved PNGs would be, and as the real images are).
    for start in range(0, len(seeds), batch_size):
        yield generate_images(model, seeds[start:start + batch_size], batch_size=batch_size,
                              device=device)


def evaluate_generator(generator: GeneratorCheckpoint, primary_images: dict, evaluation: dict) -> dict:
    """Score ``evaluation.num_samples`` generated images against the validation split.

    Args:
        generator: The trained generator.
        primary_images: ``images`` (uint8 N x C x H x W) and ``is_val`` (bool N).
        evaluation: ``params:evaluation``.

    Returns:
        ``fid``, ``inception_score``, ``inception_score_std``, ``kid``, ``kid_std``,
        ``num_samples``, ``num_reference``, ``dims``, ``inception_weights_sha256`` and
        ``inception_weights_warning`` (null for pytorch-fid's official weights).
    """
    device = core_metrics.resolve_device(evaluation["device"])
    # First, so that missing weights stop the run before anything is generated.
    inception = core_metrics.load_inception(evaluation["inception_weights"], device)
    reference = _validation_images(primary_images)
    model = load_generator(generator, device)
    makes = (model.channels, model.resolution, model.resolution)
    if makes != tuple(reference.shape[1:]):
        raise ValueError(
            f"The generator makes {makes} images (channels, height, width) but the validation "
            f"images are {tuple(reference.shape[1:])}: retrain it at this "
            "preprocessing.resolution and preprocessing.channels."
        )
    seeds = _seeds(evaluation, evaluation["num_samples"])
    return core_metrics.compute_metrics(
        _generated_batches(model, seeds, evaluation["batch_size"], device), reference, inception,
        num_generated=len(seeds), dims=evaluation["fid_dims"], is_splits=evaluation["is_splits"],
        kid_subsets=evaluation["kid_subsets"], kid_subset_size=evaluation["kid_subset_size"],
        batch_size=evaluation["batch_size"], cache_dir=evaluation["reference_cache_dir"],
    )


def draw_sample_grids(generator: GeneratorCheckpoint, primary_images: dict,
                      evaluation: dict) -> tuple[Image.Image, Image.Image]:
    """A grid of the first ``evaluation.grid_size`` scored samples, and one of as many
    validation images, for looking at side by side."""
    device = core_metrics.resolve_device(evaluation["device"])
    model = load_generator(generator, device)
    generated = generate_images(model, _seeds(evaluation, evaluation["grid_size"]), device=device)
    real = _validation_images(primary_images)[: evaluation["grid_size"]]
    return image_grid(generated), image_grid(real)


def scores_for_tracking(metrics: dict) -> dict:
    """The scores of ``metrics`` in kedro-mlflow's metrics format: ``{name: {"value", "step"}}``."""
    return {name: {"value": float(metrics[name]), "step": 0} for name in core_metrics.SCORE_NAMES}
