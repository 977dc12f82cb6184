"""Training nodes: the primary tensor and ``params:training`` in; generator, grid, losses out.

The loop itself (AMP, EMA, checkpoints, resume, DDP) is :func:`atelier.core.training.train_gan`.
"""

from __future__ import annotations

import dataclasses
import logging

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd
import torch
from matplotlib.figure import Figure
from PIL import Image

from atelier.core.generate import draw_sample_grid
from atelier.core.metrics import EvaluationConfig, GeneratorScorer
from atelier.core.models import GeneratorCheckpoint
from atelier.core.shards import primary_split
from atelier.core.training import (
    ParentModel,
    Report,
    TrainingConfig,
    TrainingState,
    check_parent,
    launch_training,
    merged_class_names,
)

logger = logging.getLogger(__name__)


def fetch_parent_model(training: dict, model_registry) -> ParentModel:
    """The model ``training.init_from`` names (``ParentModel.none()``: from scratch), from
    the catalog's ``model_registry`` (:meth:`atelier.tracking.ModelRegistry.parent`): a
    registered version by alias or number, a run, or a file. It has no data inputs, so it
    runs first and a parent that is missing stops the run before any work."""
    config = TrainingConfig.from_params(training)
    return model_registry.parent(config.init_from)


def train_generator(primary_images: dict, parent_model: ParentModel | None, training: dict,
                    evaluation: dict, training_reporter: Report,
                    ) -> tuple[GeneratorCheckpoint, TrainingState, Image.Image, pd.DataFrame]:
    """Train the GAN on the training rows of ``primary_images``; keep the best generator.

    Args:
        primary_images: ``images`` (uint8 N x C x H x W) or ``shards`` (the training split
            is then streamed, each rank its share: :mod:`atelier.core.training.streaming`),
            ``is_val`` (bool N), ``data_hash``, and for conditional training ``class_indices`` (int64 N,
            positions in ``class_names``) and ``class_names``; the resolution and channels
            are the tensor's.
        parent_model: The model a fine-tune starts from (``training.init_from``), else
            ``ParentModel.none()`` or None;
            checked against this run's networks and classes before any training
            (:func:`~atelier.core.training.check_parent`).
        training: ``params:training``.
        evaluation: ``params:evaluation``: ``grid_size`` sizes the sample grids; with
            ``training.eval_every`` on, the EMA and the raw generator are scored with its Inception weights and ``fid_dims`` against
            ``training.eval_samples`` training images, from seeds the evaluation never
            uses, and the best is kept (the validation split stays for the evaluation:
            ``atelier.core.training.selection``).
        training_reporter: Called every ``training.log_every`` steps with the losses (and
            sample grids, and in-training scores); the catalog's ``training_reporter``
            streams them to MLflow.

    Returns:
        The selected ``generator`` (a :class:`~atelier.core.models.GeneratorCheckpoint`
        recording its step and variant, for conditional training its ``class_names``, and
        for a fine-tune its ``parent``), the ``training_state`` a later fine-tune of this
        run starts from (:class:`~atelier.core.training.TrainingState`), a grid of its samples from seeds ``0..evaluation.grid_size-1`` (one row per class for
        a conditional generator, see :func:`~atelier.core.generate.draw_sample_grid`), and
        the loss history (step, loss_d, loss_g, images_per_sec, and with ``training.ada``
        the adaptive augmentation's strength ``augment_p``).

    Raises:
        ValueError: ``training.conditional`` is true but the images do not form at least
            two classes, some images are in no class folder, or a class has no training
            image.
    """
    evaluation_config = EvaluationConfig.from_params(evaluation)
    config = TrainingConfig.from_params(training, grid_size=evaluation_config.grid_size)
    if config.conditional:
        check_classes(primary_images)
    images = primary_split(primary_images, "train")  # a tensor, or shards streamed by rank
    train_rows = ~primary_images["is_val"]
    class_indices = primary_images.get("class_indices")
    class_names = tuple(primary_images.get("class_names", ())) if config.conditional else ()
    if not parent_model:
        parent_model = None
    else:
        check_parent(parent_model.state, architecture=config.architecture,
                     resolution=images.shape[-1], channels=images.shape[1],
                     latent_dim=config.latent_dim, g_width=config.g_width,
                     d_width=config.d_width, spectral_norm=config.spectral_norm,
                     conditional=config.conditional)
        if config.conditional:  # the parent's classes first (their rows), then new ones
            merged = merged_class_names(parent_model.state.generator, class_names)
            position = torch.tensor([merged.index(name) for name in class_names])
            class_indices, class_names = position[class_indices], merged
        logger.info("Fine-tuning %s (%s).", parent_model.describe(), parent_model.identity["source"])
    scorer = GeneratorScorer.for_selection(
        evaluation_config, images, config.eval_samples) if config.eval_every else None
    result = launch_training(
        images, config, data_hash=primary_images["data_hash"],
        report=training_reporter, scorer=scorer,
        labels=None if class_indices is None else class_indices[train_rows],
        parent=None if parent_model is None else parent_model.state)
    checkpoint = dataclasses.replace(
        result.checkpoint, class_names=class_names,
        parent={} if parent_model is None else parent_model.identity)
    grid = draw_sample_grid(result.generator, range(config.grid_size))
    columns = ["step", "loss_d", "loss_g", "images_per_sec"] + (["augment_p"] if config.ada else [])
    history = pd.DataFrame(result.history, columns=columns)
    return checkpoint, result.training_state(checkpoint), grid, history


def check_classes(primary_images: dict) -> None:
    """Refuse class-conditional training on images that do not form classes: fewer than two
    class folders, images directly in the source folder (no class), or a class whose images
    are all in the validation split."""
    if "class_indices" not in primary_images:
        raise ValueError("training.conditional is true but primary_images has no class_indices: "
                         "it was not written by this version's preprocessing. Run 'kedro run "
                         "--pipelines=data_ingestion,preprocessing' again first.")
    names, labels = list(primary_images["class_names"]), primary_images["class_indices"]
    if "" in names:
        unfiled = [path for path, label in zip(primary_images["paths"], labels.tolist(), strict=True)
                   if names[label] == ""]
        shown = ", ".join(unfiled[:5]) + (f" and {len(unfiled) - 5} more" if len(unfiled) > 5 else "")
        raise ValueError(
            f"training.conditional is true but {len(unfiled)} images are directly in the source "
            f"folder, in no class folder: {shown}. A class is an image's top-level folder under "
            "ingestion.source: move each image into a folder named after its class (e.g. "
            "<source>/cat/1.png), or set training.conditional=false.")
    if len(names) < 2:
        raise ValueError(
            f"training.conditional needs at least two classes (top-level folders under "
            f"ingestion.source), found {len(names)}: {names}. Add a folder per class, or set "
            "training.conditional=false.")
    trained = set(labels[~primary_images["is_val"]].tolist())
    missing = [name for index, name in enumerate(names) if index not in trained]
    if missing:
        raise ValueError(
            f"The classes {missing} have no training image (all their images are in the "
            "validation split): add images to them, or lower preprocessing.val_fraction.")


def plot_loss_curve(loss_history: pd.DataFrame) -> Figure:
    """Discriminator and generator losses against the step (a PNG in the catalog)."""
    figure, axes = plt.subplots(figsize=(7, 3.5), layout="constrained")
    for column in ("loss_d", "loss_g"):
        axes.plot(loss_history["step"], loss_history[column], label=column)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title("Training losses")
    axes.legend()
    return figure
