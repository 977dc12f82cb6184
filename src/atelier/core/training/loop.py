"""``train_gan``: the GAN training loop, read top to bottom.

Set up (models, optimizers, the checkpoint to resume, the data on the device), then one
``for step`` loop: the batch, the D step, the G step, EMA, logging, checkpointing. The
policies it applies (device, precision, data placement, determinism, signals) are in
:mod:`~atelier.core.training.runtime`; checkpoint files in
:mod:`~atelier.core.training.checkpoints`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from atelier.core.errors import TrainingDivergedError
from atelier.core.generate import generate_images
from atelier.core.models import Discriminator, Generator, GeneratorCheckpoint
from atelier.core.training.checkpoints import (
    _checkpoint_to_resume,
    _prune_checkpoints,
    _save_checkpoint,
)
from atelier.core.training.config import TrainingConfig
from atelier.core.training.runtime import (
    _autocast,
    _autocast_dtype,
    _determinism,
    _device_ids,
    _exit_on_signal,
    _memory_format,
    _place_data,
    _StopSignal,
    _training_device,
)

log = logging.getLogger(__name__)


class Report(Protocol):
    """Called on rank 0 at every logging interval.

    ``metrics`` holds ``loss_d`` and ``loss_g`` (means over the interval) and
    ``images_per_sec`` (all ranks together); ``samples`` is a uint8 ``N x C x H x W`` tensor
    of EMA-generator images from seeds ``0..num_sample_images-1`` at ``sample_every`` steps,
    else ``None``.
    """

    def __call__(
        self, step: int, metrics: dict[str, float], samples: torch.Tensor | None = None
    ) -> None: ...


@dataclasses.dataclass
class TrainingResult:
    """What a run produces: the EMA generator (CPU, eval mode) and the loss history."""

    generator: Generator
    history: list[dict[str, float]]
    step: int
    resumed_from: Path | None
    device: str  # where rank 0 trained, e.g. "cpu" or "cuda:0"

    @property
    def checkpoint(self) -> GeneratorCheckpoint:
        """The EMA generator as the typed artifact that ``load_generator`` reads."""
        return GeneratorCheckpoint.from_generator(
            self.generator, training_device=self.device, step=self.step, variant="ema"
        )


def train_gan(images: torch.Tensor, config: TrainingConfig, *, data_hash: str,
              report: Report | None = None) -> TrainingResult:
    """Train a DCGAN on ``images`` (uint8 ``N x C x H x W``, the training rows only).

    ``data_hash`` (``primary_images["content_hash"]``) names the dataset's checkpoint folder;
    the newest checkpoint there is resumed when ``config.resume`` is ``auto``. In a
    ``torch.distributed`` group each rank trains on its shard ``images[rank::world_size]``
    with ``batch_size / world_size`` images per step; only rank 0 reports and checkpoints.
    """
    # ---------------------------------------------------------------- set up
    rank, world_size = _check_images_and_group(images, config)
    device = _training_device(config.device, rank)
    amp_dtype = _autocast_dtype(config.precision, device)
    autocast = _autocast(device, amp_dtype)  # bf16 / fp16 convolutions on tensor cores or AMX
    memory_format = _memory_format(config.channels_last, device)
    _, channels, resolution, _ = images.shape
    checkpoint_dir = Path(config.checkpoint_dir) / data_hash[:12]
    models = _build_models(config, resolution, channels, device, memory_format, world_size)
    optimizers = _build_optimizers(models, config, device, amp_dtype)
    generator, discriminator, generator_ema = models
    optimizer_g, optimizer_d, scaler_g, scaler_d = optimizers
    start_step, history, resumed_from = _resume(checkpoint_dir, config, resolution, channels,
                                                rank, models, optimizers)
    last_good_checkpoint = resumed_from
    shard, sampler = _place_data(images, rank, world_size, device, config.data_on_device)
    log.info("Training %dx%d, %d channel(s), on %s (%d of %d training images on this rank, "
             "held on %s), precision %s, batch %d.", resolution, resolution, channels, device,
             len(shard), len(images), shard.device, amp_dtype or torch.float32, config.batch_size)
    g_train, d_train, d_frozen = _wrap_for_training(models, config.compile, device, world_size)
    ema = _MovingAverage(generator_ema, generator, config.ema_decay)
    losses = _IntervalLosses(device)
    progress = tqdm(total=config.max_steps, initial=start_step, unit="step",
                    desc="training", disable=True if rank else None, dynamic_ncols=True)

    with _determinism(config.deterministic), _StopSignal() as stop_signal:
        for step in range(start_step + 1, config.max_steps + 1):
            # ---------------------------------------------------------------- batch
            sampler.manual_seed(_step_seed(config.seed, rank, step))
            real, z = _draw_batch(sampler, shard, config, world_size, device, memory_format)
            # ---------------------------------------------------------------- D step
            with autocast():
                fake = g_train(z)  # one G forward serves both steps, as in the DCGAN recipe
                loss_d = _discriminator_loss(config.loss, d_train(real), d_train(fake.detach()))
            _optimizer_step(loss_d, optimizer_d, scaler_d)
            # ---------------------------------------------------------------- G step
            discriminator.requires_grad_(False)  # D only passes gradients through to G
            with autocast():
                loss_g = _generator_loss(config.loss, d_frozen(fake))
            _optimizer_step(loss_g, optimizer_g, scaler_g)
            discriminator.requires_grad_(True)
            # ---------------------------------------------------------------- EMA
            ema.update(step)
            # ---------------------------------------------------------------- logging
            losses.add(step, loss_d, loss_g)
            progress.update()
            log_step = step % config.log_every == 0 or step == config.max_steps
            if log_step:
                _raise_if_diverged(losses.first_nonfinite_step, last_good_checkpoint, world_size)
                metrics = losses.interval_metrics(config.batch_size)
                history.append({"step": step, **metrics})
                progress.set_postfix(loss_d=f"{metrics['loss_d']:.3f}", loss_g=f"{metrics['loss_g']:.3f}",
                                     img_s=f"{metrics['images_per_sec']:.0f}")
                if rank == 0 and report is not None:
                    report(step, metrics, samples=_samples(generator_ema, step, config, device))
            # ---------------------------------------------------------------- checkpoint
            stop = stop_signal.agreed(log_step, world_size, device)  # SIGTERM / Ctrl-C
            if (config.checkpoint_every and step % config.checkpoint_every == 0) or stop or step == config.max_steps:
                # Never write a checkpoint after a non-finite loss: the last good one stays.
                _raise_if_diverged(losses.first_nonfinite_step, last_good_checkpoint, world_size)
                if rank == 0:
                    last_good_checkpoint = _save_checkpoint(checkpoint_dir, step, _state_dicts(models, optimizers),
                                                            config, resolution, channels, data_hash, history)
                    _prune_checkpoints(checkpoint_dir, config.keep_checkpoints)
            if stop:  # the checkpoint is written: exit as the signal asked
                _exit_on_signal(stop_signal, step, checkpoint_dir, progress)
            if log_step:
                losses.restart_clock()  # images/s leaves out logging and saving
    progress.close()
    result_generator = copy.deepcopy(generator_ema).cpu().to(memory_format=torch.contiguous_format)
    return TrainingResult(result_generator.eval(), history, config.max_steps, resumed_from, str(device))


# ------------------------------------------------------------------------- set up

class _Models(NamedTuple):
    generator: Generator  # with SyncBatchNorm layers when several GPUs train together
    discriminator: Discriminator
    generator_ema: Generator


class _Optimizers(NamedTuple):
    optimizer_g: torch.optim.Optimizer
    optimizer_d: torch.optim.Optimizer
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler


def _check_images_and_group(images: torch.Tensor, config: TrainingConfig) -> tuple[int, int]:
    """This process's rank and the world size, after checking that the inputs can train."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError("train_gan needs a uint8 tensor N x C x H x W (primary_images['images']).")
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"Training images must be square, got {tuple(images.shape[2:])}.")
    if len(images) == 0:
        raise ValueError("There are no training images (all rows are validation rows?). "
                         "Add images or lower preprocessing.val_fraction.")
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if config.batch_size % world_size:
        raise ValueError(f"training.batch_size ({config.batch_size}) must divide evenly among "
                         f"{world_size} processes.")
    return rank, world_size


def _build_models(config: TrainingConfig, resolution: int, channels: int, device: torch.device,
                  memory_format: torch.memory_format, world_size: int) -> _Models:
    torch.manual_seed(config.seed)  # same initial weights on every rank and every device
    generator = Generator(resolution, channels, config.latent_dim, config.g_width)
    discriminator = Discriminator(resolution, channels, config.d_width)
    generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    for module in (generator, discriminator, generator_ema):
        module.to(device, memory_format=memory_format)
    if world_size > 1 and device.type == "cuda":
        # Batch-norm statistics over the global batch, as on one device (torch's
        # SyncBatchNorm is GPU-only; on CPU each rank normalises with its own batch and
        # DDP broadcasts rank 0's running statistics).
        generator = nn.SyncBatchNorm.convert_sync_batchnorm(generator)
        discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
    return _Models(generator, discriminator, generator_ema)


def _build_optimizers(models: _Models, config: TrainingConfig, device: torch.device,
                      amp_dtype: torch.dtype | None) -> _Optimizers:
    # Fused Adam: one kernel for all parameters; with a GradScaler it also skips
    # overflowing fp16 steps on the device instead of asking the host.
    fused = device.type in ("cuda", "cpu")
    betas = (config.beta1, config.beta2)
    optimizer_g = torch.optim.Adam(models.generator.parameters(), lr=config.lr_g, betas=betas,
                                   fused=fused)
    optimizer_d = torch.optim.Adam(models.discriminator.parameters(), lr=config.lr_d,
                                   betas=betas, fused=fused)
    # fp16 needs loss scaling; one scaler per optimizer, so an overflow in D's backward does
    # not skip G's step. Disabled (a no-op) for bf16 and fp32.
    scaler_g = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    scaler_d = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    return _Optimizers(optimizer_g, optimizer_d, scaler_g, scaler_d)


def _state_dicts(models: _Models, optimizers: _Optimizers) -> dict[str, Any]:
    """Every part's state dict under its checkpoint key (``generator``, ``optimizer_g``...)."""
    parts = {**models._asdict(), **optimizers._asdict()}
    return {name: part.state_dict() for name, part in parts.items()}


def _resume(checkpoint_dir: Path, config: TrainingConfig, resolution: int, channels: int,
            rank: int, models: _Models,
            optimizers: _Optimizers) -> tuple[int, list[dict[str, float]], Path | None]:
    """Load the checkpoint to resume into the models and optimizers: (step, history, path)."""
    path = _checkpoint_to_resume(checkpoint_dir, config, resolution, channels, rank)
    if path is None:
        return 0, [], None
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for name, part in {**models._asdict(), **optimizers._asdict()}.items():
        part.load_state_dict(checkpoint[name])
    log.info("Resuming training from %s (step %d of %d).", path, checkpoint["step"],
             config.max_steps)
    return checkpoint["step"], checkpoint["history"], path


def _wrap_for_training(models: _Models, compile_models: bool, device: torch.device,
                       world_size: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    """G and D as the steps call them: DDP across ranks, compiled when asked.

    The third module is D for the G step: there D only carries gradients back to G, so it
    runs without DDP.
    """
    g_train, d_train, d_frozen = models.generator, models.discriminator, models.discriminator
    if world_size > 1:
        g_train = DistributedDataParallel(models.generator, device_ids=_device_ids(device))
        d_train = DistributedDataParallel(models.discriminator, device_ids=_device_ids(device))
    if compile_models:
        # torch.compile fuses batch norm, activations and scaling around the convolutions;
        # the first steps are slow while it compiles.
        g_train, d_train, d_frozen = map(torch.compile, (g_train, d_train, d_frozen))
    return g_train, d_train, d_frozen


# ------------------------------------------------------------------------- each step

def _draw_batch(sampler: torch.Generator, shard: torch.Tensor, config: TrainingConfig,
                world_size: int, device: torch.device,
                memory_format: torch.memory_format) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's real images (flipped at random when ``config.flip``) in [-1, 1] and
    latents, ``batch_size / world_size`` of each, on ``device``."""
    local_batch = config.batch_size // world_size
    index = torch.randint(len(shard), (local_batch,), device=shard.device, generator=sampler)
    real = shard[index]
    if config.flip:
        flip = torch.rand(local_batch, 1, 1, 1, device=shard.device, generator=sampler) < 0.5
        real = torch.where(flip, real.flip(3), real)
    z = torch.randn(local_batch, config.latent_dim, device=shard.device, generator=sampler)
    real = real.to(device, non_blocking=True).float().div_(127.5).sub_(1)
    real = real.contiguous(memory_format=memory_format)
    return real, z.to(device, non_blocking=True)


def _step_seed(seed: int, rank: int, step: int) -> int:
    return ((seed * 1_000_003 + rank) * 1_000_000_007 + step) % 2**63


def _discriminator_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "bce":  # DCGAN: BCE(D(x), 1) + BCE(D(G(z)), 0); softplus(-t) = BCE-with-logits(t, 1)
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()  # hinge


def _generator_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    fake_logits = fake_logits.float()
    if kind == "bce":  # the non-saturating loss of the GAN and DCGAN papers
        return F.softplus(-fake_logits).mean()
    return -fake_logits.mean()  # hinge


def _optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


class _MovingAverage:
    """Keeps ``average``'s weights an exponential moving average of ``source``'s.

    The decay ramps up as (1 + step) / (10 + step) to ``decay`` so that short runs do not
    average in their first, random weights; batch-norm statistics are copied.
    """

    def __init__(self, average: nn.Module, source: nn.Module, decay: float) -> None:
        self.decay = decay
        self.average_params, self.source_params = list(average.parameters()), list(source.parameters())
        self.average_buffers, self.source_buffers = list(average.buffers()), list(source.buffers())

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.average_params, self.source_params, 1 - decay)
        torch._foreach_copy_(self.average_buffers, self.source_buffers)


# ------------------------------------------------------------------------- logging

class _IntervalLosses:
    """Loss sums and the first non-finite step of a logging interval.

    They live on the device: reading them forces a host sync, which happens only at
    logging and checkpoint steps.
    """

    def __init__(self, device: torch.device) -> None:
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

    def interval_metrics(self, batch_size: int) -> dict[str, float]:
        """Mean losses and images/s (all ranks) since the last call; the sums start over."""
        loss_d, loss_g = self.sum_d.item() / self.steps, self.sum_g.item() / self.steps
        elapsed = time.perf_counter() - self.start  # after .item(): the device is done
        metrics = {"loss_d": loss_d, "loss_g": loss_g,
                   "images_per_sec": self.steps * batch_size / elapsed}
        self.sum_d.zero_()
        self.sum_g.zero_()
        self.steps = 0
        return metrics

    def restart_clock(self) -> None:
        self.start = time.perf_counter()


def _samples(generator_ema: Generator, step: int, config: TrainingConfig,
             device: torch.device) -> torch.Tensor | None:
    """EMA images from seeds ``0..num_sample_images-1`` at sample steps, else None."""
    if not (config.sample_every and step % config.sample_every == 0):
        return None
    return generate_images(generator_ema, list(range(config.num_sample_images)), device=device)


def _raise_if_diverged(first_nonfinite_step: torch.Tensor, last_good: Path | None,
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
