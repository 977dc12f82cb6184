"""Progress of a training run: interval losses and speed, sample grids, divergence.

The loss sums live on the device; reading them forces a host sync, which happens only at
logging and checkpoint steps.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from atelier.core.errors import TrainingDivergedError
from atelier.core.generate import generate_images
from atelier.core.models import Generator
from atelier.core.training.config import TrainingConfig
from atelier.core.training.steps import recalibrate_batchnorm

log = logging.getLogger(__name__)


def log_start(images: torch.Tensor, num_classes: int, device: torch.device, shard_size: int,
               amp_dtype: torch.dtype | None, config: TrainingConfig) -> None:
    _, channels, resolution, _ = images.shape
    classes = f"{num_classes} classes" if num_classes else "unconditional"
    log.info("Training %dx%d, %d channel(s), %s, on %s (%d of %d training images on this rank), "
             "precision %s, batch %d.", resolution, resolution, channels, classes, device,
             shard_size, len(images), amp_dtype or torch.float32, config.batch_size)


def end_interval(step: int, losses: IntervalLosses, history: list[dict[str, float]],
                  progress: tqdm, last_good: Path | None, world_size: int,
                  augment_p: float | None = None) -> dict[str, float]:
    """Close a logging interval: check for divergence, record and show its metrics
    (``augment_p``: adaptive augmentation's strength now, when it is on)."""
    raise_if_diverged(losses.first_nonfinite_step, last_good, world_size)
    metrics = losses.interval_metrics()
    if augment_p is not None:
        metrics["augment_p"] = augment_p
    history.append({"step": step, **metrics})
    progress.set_postfix(loss_d=f"{metrics['loss_d']:.3f}", loss_g=f"{metrics['loss_g']:.3f}",
                         img_s=f"{metrics['images_per_sec']:.0f}")
    return metrics

class IntervalLosses:
    """Loss sums and the first non-finite step of a logging interval.

    They live on the device: reading them forces a host sync, which happens only at
    logging and checkpoint steps.
    """

    def __init__(self, device: torch.device, batch_size: int) -> None:
        self.batch_size = batch_size
        self.sum_d = torch.zeros((), device=device)
        self.sum_g = torch.zeros((), device=device)
        self.first_nonfinite_step = torch.full((), -1, dtype=torch.long, device=device)
        self.steps = 0
        self.start = time.perf_counter()

    def add(self, step: int, loss_d: torch.Tensor, loss_g: torch.Tensor) -> None:
        self.sum_d += loss_d.detach()
        self.sum_g += loss_g.detach()
        nonfinite = ~torch.isfinite(loss_d.detach() + loss_g.detach())
        self.first_nonfinite_step.masked_fill_(nonfinite & (self.first_nonfinite_step < 0), step)
        self.steps += 1

    def interval_metrics(self) -> dict[str, float]:
        """Mean losses and images/s (all ranks) since the last call; the sums start over."""
        loss_d, loss_g = self.sum_d.item() / self.steps, self.sum_g.item() / self.steps
        elapsed = time.perf_counter() - self.start  # after .item(): the device is done
        metrics = {"loss_d": loss_d, "loss_g": loss_g,
                   "images_per_sec": self.steps * self.batch_size / elapsed}
        self.sum_d.zero_()
        self.sum_g.zero_()
        self.steps = 0
        return metrics

    def restart_clock(self) -> None:
        self.start = time.perf_counter()


def samples(generator_ema: Generator, step: int, config: TrainingConfig, device: torch.device,
             num_classes: int, recalibrate: bool = True) -> torch.Tensor | None:
    """EMA images from seeds ``0..grid_size-1`` at sample steps, else None
    (conditional: classes in turn, ``seed % num_classes``); the EMA's batch-norm
    statistics are recomputed for its weights first, unless ``recalibrate`` is false (a
    fine-tune's step 0: the parent's images as they are)."""
    if not (config.sample_every and step % config.sample_every == 0):
        return None
    if recalibrate:
        recalibrate_batchnorm(generator_ema)
    seeds = list(range(config.grid_size))
    labels = [seed % num_classes for seed in seeds] if num_classes else None
    return generate_images(generator_ema, seeds, device=device, labels=labels)


def raise_if_diverged(first_nonfinite_step: torch.Tensor, last_good: Path | None,
                       world_size: int) -> None:
    if world_size > 1:
        first_nonfinite_step = first_nonfinite_step.clone()
        dist.all_reduce(first_nonfinite_step, op=dist.ReduceOp.MAX)
    step = int(first_nonfinite_step.item())
    if step >= 0:
        kept = f"The last good checkpoint, {last_good}, is kept" if last_good else "No checkpoint was written"
        raise TrainingDivergedError(
            f"Training diverged: the loss became NaN or infinite at step {step}. {kept}; "
            "nothing after the divergence was saved. Lower training.lr_d / training.lr_g, or "
            "set training.precision=fp32, and run again (training.resume=never to start over)."
        )
