"""Training nodes: the primary tensor and ``params:training`` in; generator, grid, losses out.

The loop itself (AMP, EMA, checkpoints, resume, DDP) is :func:`atelier.core.training.train_gan`.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from atelier.core.generate import generate_images, image_grid
from atelier.core.models import GeneratorCheckpoint
from atelier.core.training import Report, TrainingConfig, launch_training


def train_generator(primary_images: dict, training: dict, training_reporter: Report,
                    ) -> tuple[GeneratorCheckpoint, Image.Image, pd.DataFrame]:
    """Train the DCGAN on the training rows of ``primary_images``.

    Args:
        primary_images: ``images`` (uint8 N x C x H x W), ``is_val`` (bool N) and
            ``data_hash``; the resolution and channels are the tensor's.
        training: ``params:training``.
        training_reporter: Called every ``training.log_every`` steps with the losses (and
            sample grids); the catalog's ``training_reporter`` streams them to MLflow.

    Returns:
        The trained ``generator`` (a :class:`~atelier.core.models.GeneratorCheckpoint`), a
        grid of its samples from seeds ``0..num_sample_images-1``, and the loss history
        (step, loss_d, loss_g, images_per_sec).
    """
    config = TrainingConfig.from_params(training)
    train_images = primary_images["images"][~primary_images["is_val"]]
    result = launch_training(train_images, config, data_hash=primary_images["data_hash"],
                             report=training_reporter)
    samples = generate_images(result.generator, range(config.num_sample_images))
    grid = image_grid(samples)
    history = pd.DataFrame(result.history, columns=["step", "loss_d", "loss_g", "images_per_sec"])
    return result.checkpoint, grid, history


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
