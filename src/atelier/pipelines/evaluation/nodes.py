"""Evaluation nodes: the trained generator, the champion and the validation split in;
metrics and grids out.

The candidate and the current champion are scored side by side, in one evaluation: the
same validation images, Inception weights, sample count, seeds and feature dims. The
scoring itself (Inception features, FID, IS, KID, per-class scores, the
reference-statistics cache) is :mod:`atelier.core.metrics.scoring`'s, with the settings of
one validated :class:`~atelier.core.metrics.EvaluationConfig`; these nodes only load
generators, pick the validation images and hand them over.
"""

from __future__ import annotations

import logging

import torch
from PIL import Image

from atelier.core import metrics as core_metrics
from atelier.core.generate import class_names_of, draw_sample_grid, image_grid
from atelier.core.models import GeneratorCheckpoint, load_generator
from atelier.core.shards import ShardedImages, primary_split

logger = logging.getLogger(__name__)


def fetch_champion(model_registry, registration: dict) -> dict:
    """The registered champion to score beside the candidate.

    Args:
        model_registry: The catalog's ``model_registry`` (``champion(model_name)``).
        registration: ``params:registration`` (``model_name``).

    Returns:
        ``{"version": str, "generator": GeneratorCheckpoint}``, or ``{"version": None}``
        when the model has no champion yet.
    """
    champion = model_registry.champion(registration["model_name"])
    if champion is None:
        logger.info("No champion of %s yet: the candidate is scored alone.",
                    registration["model_name"])
        return {"version": None}
    return {"version": champion.version, "generator": champion.generator}


def validation_images(primary_images: dict, count: int | None = None) -> torch.Tensor:
    """The validation split of ``primary_images`` (at least two images, for FID), in
    memory, or only its first ``count`` images; from its shards when preprocessing wrote
    shards (then only the shards holding those images are read)."""
    images = primary_split(primary_images, "val")
    if len(images) < 2:
        raise ValueError(
            f"The validation split holds {len(images)} image(s); FID needs at least 2. Add images "
            "or raise preprocessing.val_fraction in conf/base/parameters_preprocessing.yml."
        )
    if isinstance(images, ShardedImages):
        return images.load() if count is None or count >= len(images) else images.take(range(count))
    return images if count is None else images[:count]


def evaluate_generator(generator: GeneratorCheckpoint, champion: dict, primary_images: dict,
                       evaluation: dict) -> dict:
    """Score the candidate, and the champion beside it, against the validation split.

    Args:
        generator: The trained candidate.
        champion: :func:`fetch_champion`'s output.
        primary_images: ``images`` (uint8 N x C x H x W) and ``is_val`` (bool N).
        evaluation: ``params:evaluation``.

    Returns:
        The candidate's ``fid``, ``inception_score``, ``inception_score_std``, ``kid``,
        ``kid_std``, ``num_samples``, ``num_reference``, ``dims``,
        ``inception_weights_sha256``, ``inception_weights_warning`` (null for pytorch-fid's
        official weights), ``generator_step`` and ``generator_variant``; and ``champion``:
        null without a champion, else ``{"version", <the same scores>}`` computed in this
        evaluation, or ``{"version", "incompatible": why}`` when it cannot be scored on
        this data (another resolution or channel count). For a class-conditional
        candidate, also ``per_class``: ``{class_name: {"fid", "kid", "num_reference"}}``
        for every class with at least ``PER_CLASS_MIN_REFERENCE`` validation images
        (see :func:`atelier.core.metrics.score_classes`).
    """
    config = core_metrics.EvaluationConfig.from_params(evaluation)
    # First, so that unusable weights stop the run before anything is generated.
    inception = core_metrics.load_evaluation_inception(config)
    reference = validation_images(primary_images)
    candidate = load_generator(generator)
    problem = core_metrics.incompatibility(candidate, reference)
    if problem:
        raise ValueError(f"The trained generator does not fit the validation data: {problem}. "
                         "Retrain it at this preprocessing.resolution and preprocessing.channels.")
    # Under torchrun -m atelier.cluster every rank scores its share (one process: the same).
    metrics = core_metrics.score_generator_on_group(candidate, reference, inception, config)
    metrics.update(generator_step=generator.step, generator_variant=generator.variant,
                   champion=None)
    if candidate.num_classes:
        metrics["per_class"] = _score_classes(candidate, class_names_of(generator),
                                              primary_images, reference, inception, config)
    if champion["version"] is not None:
        metrics["champion"] = core_metrics.score_beside(
            champion["version"], load_generator(champion["generator"]), reference, inception,
            config, score=core_metrics.score_generator_on_group)
        if "fid" in metrics["champion"]:
            logger.info("Side by side: candidate FID %.4f, champion (version %s) FID %.4f.",
                        metrics["fid"], champion["version"], metrics["champion"]["fid"])
        else:
            logger.warning("Champion version %s cannot be scored on this data: %s.",
                           champion["version"], metrics["champion"]["incompatible"])
    return metrics


def _score_classes(candidate: torch.nn.Module, class_names: tuple[str, ...], primary_images: dict,
                   reference: torch.Tensor, inception: core_metrics.FIDInception,
                   config: core_metrics.EvaluationConfig) -> dict:
    """:func:`atelier.core.metrics.score_classes` on the validation split's classes."""
    if "class_indices" not in primary_images:
        logger.warning("primary_images has no class indices: no per-class scores.")
        return {}
    is_val = primary_images["is_val"]
    return core_metrics.score_classes(
        candidate, class_names, reference,
        primary_images["class_indices"][is_val], primary_images["class_names"], inception, config)


def draw_sample_grids(generator: GeneratorCheckpoint, primary_images: dict,
                      evaluation: dict) -> tuple[Image.Image, Image.Image]:
    """A grid of the first ``evaluation.grid_size`` scored samples (for a class-conditional
    generator one row per class, see :func:`~atelier.core.generate.draw_sample_grid`), and
    one of as many validation images, for looking at side by side."""
    config = core_metrics.EvaluationConfig.from_params(evaluation)
    device = core_metrics.resolve_device(config.device)
    model = load_generator(generator, device)
    generated = draw_sample_grid(model, config.seeds(config.grid_size), device)
    real = validation_images(primary_images, config.grid_size)
    return generated, image_grid(real)


def scores_for_tracking(metrics: dict) -> dict:
    """The scores in kedro-mlflow's metrics format (``{name: {"value", "step"}}``): the
    candidate's under their own names, the champion's side-by-side ones as ``champion_<name>``."""
    scores = {name: metrics[name] for name in core_metrics.SCORE_NAMES}
    champion = metrics.get("champion") or {}
    if "fid" in champion:
        scores.update({f"champion_{name}": champion[name] for name in core_metrics.SCORE_NAMES})
    return {name: {"value": float(value), "step": 0} for name, value in scores.items()}
