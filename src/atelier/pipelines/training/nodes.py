"""Training nodes: the primary tensor and ``params:training`` in; generator, grid, losses out.

The loop itself (AMP, EMA, checkpoints, resume, DDP) is :func:`atelier.core.training.train_gan`.
"""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from atelier.core.generate import cycled_labels, generate_images, image_grid
from atelier.core.metrics import GeneratorScorer
from atelier.core.models import GeneratorCheckpoint
from atelier.core.training import Report, TrainingConfig, launch_training


def train_generator(primary_images: dict, training: dict, evaluation: dict,
                    training_reporter: Report) -> tuple[GeneratorCheckpoint, Image.Image, pd.DataFrame]:
    """Train the GAN on the training rows of ``primary_images``; keep the best generator.

    Args:
        primary_images: ``images`` (uint8 N x C x H x W), ``is_val`` (bool N),
            ``data_hash``, and for conditional training ``labels`` (int64 N) and
            ``class_names``; the resolution and channels are the tensor's.
        training: ``params:training``.
        evaluation: ``params:evaluation``: with ``training.eval_every`` on, the EMA and the
            raw generator are scored against the validation images with its Inception
            weights, ``fid_dims`` and seeds, and the best is kept.
        training_reporter: Called every ``training.log_every`` steps with the losses (and
            sample grids, and in-training scores); the catalog's ``training_reporter``
            streams them to MLflow.

    Returns:
        The selected ``generator`` (a :class:`~atelier.core.models.GeneratorCheckpoint`
        recording its step and variant), a grid of its samples from seeds
        ``0..num_sample_images-1``, and the loss history (step, loss_d, loss_g,
        images_per_sec).
    """
    config = TrainingConfig.from_params(training)
    train_rows = ~primary_images["is_val"]
    labels = primary_images.get("labels")
    scorer = GeneratorScorer.from_evaluation_params(
        evaluation, primary_images["images"][primary_images["is_val"]], config.eval_samples,
    ) if config.eval_every else None
    result = launch_training(
        primary_images["images"][train_rows], config, data_hash=primary_images["data_hash"],
        report=training_reporter, labels=None if labels is None else labels[train_rows],
        scorer=scorer)
    seeds = range(config.num_sample_images)
    samples = generate_images(result.generator, seeds, labels=cycled_labels(result.generator, seeds))
    class_names = tuple(primary_images.get("class_names", ())) if config.conditional else ()
    checkpoint = dataclasses.replace(result.checkpoint, class_names=class_names)
    history = pd.DataFrame(result.history, columns=["step", "loss_d", "loss_g", "images_per_sec"])
    return checkpoint, image_grid(samples), history


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
