"""``train_gan``: the GAN training loop, read top to bottom.

Set up (models, optimizers, the checkpoint to resume, the data on the device), then one
``for step`` loop: the batch, the D step, the G step, EMA, logging, checkpointing. The
policies it applies (device, precision, data placement, determinism, signals) are in
:mod:`~atelier.core.training.runtime`; checkpoint files in
:mod:`~atelier.core.training.checkpoints`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from atelier.core.ada import AdaptiveAugment
from atelier.core.layers import parameter_count
from atelier.core.models import (
    build_discriminator,
    build_generator,
)
from atelier.core.shards import ShardedImages
from atelier.core.training.batches import Batches
from atelier.core.training.checkpoints import (
    checkpoint_to_resume,
    prune_checkpoints,
    save_checkpoint,
)
from atelier.core.training.config import TrainingConfig
from atelier.core.training.parent import (
    TrainingState,
    freeze_discriminator_blocks,
    load_parent_weights,
)
from atelier.core.training.progress import (
    IntervalLosses,
    end_interval,
    log_start,
    raise_if_diverged,
    samples,
)
from atelier.core.training.result import TrainingResult, selected_result
from atelier.core.training.runtime import (
    StopSignal,
    autocast_context,
    autocast_dtype,
    choose_memory_format,
    choose_training_device,
    ddp_device_ids,
    deterministic_kernels,
    exit_on_signal,
    sum_over_ranks,
)
from atelier.core.training.selection import ModelSelection, Scorer
from atelier.core.training.steps import (
    MovingAverage,
    discriminator_step_losses,
    generator_loss,
    optimizer_step,
    r1_penalty,
)
from atelier.core.training.streaming import make_batches

log = logging.getLogger(__name__)


class Report(Protocol):
    """Called on rank 0 at every logging interval and after every in-training evaluation.

    ``metrics`` holds ``loss_d`` and ``loss_g`` (means over the interval) and
    ``images_per_sec`` (all ranks together), or the evaluation's ``eval_<metric>_<variant>``
    scores; ``samples`` is a uint8 ``N x C x H x W`` tensor of EMA-generator images from
    seeds ``0..grid_size-1`` at ``sample_every`` steps, else ``None``.
    """

    def __call__(
        self, step: int, metrics: dict[str, float], samples: torch.Tensor | None = None
    ) -> None: ...


def train_gan(images: torch.Tensor | ShardedImages, config: TrainingConfig, *, data_hash: str,
              report: Report | None = None, labels: torch.Tensor | None = None,
              scorer: Scorer | None = None, parent: TrainingState | None = None) -> TrainingResult:
    """Train a GAN (``config.architecture``) on ``images``: uint8 ``N x C x H x W`` training rows,
    or a sharded split streamed by rank (:mod:`.streaming`); ``labels`` (int64 N) when
    conditional. Checkpoints go under ``data_hash`` and the weight-shaping settings; ``scorer``:
    :mod:`.selection`; ``parent``: a fine-tune's start (:mod:`.parent`). Rank 0 reports and saves."""
    # ---------------------------------------------------------------- set up
    rank, world_size, num_classes = _check_inputs(images, labels, config, scorer, parent)
    device = choose_training_device(config.device, rank)
    autocast = autocast_context(device, amp_dtype := autocast_dtype(config.precision, device))  # bf16/fp16
    memory_format = choose_memory_format(config.channels_last, device)
    _, channels, resolution, _ = images.shape
    checkpoint_dir = _checkpoint_folder(config, data_hash, images, num_classes, parent)
    models = _build_models(config, resolution, channels, num_classes, device, memory_format, world_size, parent)
    optimizers = _build_optimizers(models, config, device, amp_dtype)
    (generator, discriminator, generator_ema), (optimizer_g, optimizer_d, scaler_g, scaler_d) = models, optimizers
    selection = ModelSelection(scorer if rank == 0 else None, config.eval_every, config.select_by,
                               config.eval_samples)
    ada = _adaptive_augment(config, parent)
    start_step, history, resumed_from, position = _resume(checkpoint_dir, config, rank, models, optimizers, selection, ada)
    batches = make_batches(images, labels if num_classes else None, rank, world_size, device, config, memory_format,
                           resumed=(position, start_step))  # a resumed stream is checked against the checkpoint's
    _connect(models, batches, ada, config)
    log_start(images, num_classes, device, len(batches), amp_dtype, config)
    g_train, d_train, d_frozen = _wrap_for_training(models, config.compile, device, world_size)
    ema = MovingAverage(generator_ema, generator, config.ema_kimg, config.ema_rampup, config.batch_size)
    _report_start(report, rank, start_step, parent, generator_ema, config, device, num_classes)
    losses, progress = IntervalLosses(device, config.batch_size), _progress_bar(config, start_step, rank)
    last_good_checkpoint = resumed_from
    with deterministic_kernels(config.deterministic), StopSignal() as stop_signal, contextlib.closing(batches):
        for step in range(start_step + 1, config.max_steps + 1):
            # ---------------------------------------------------------------- batch
            real, real_labels, z = batches.draw(step)  # fakes take the real batch's classes
            augment = batches.augmentation(step)  # DiffAugment of all D sees: D, G and R1 passes
            # ---------------------------------------------------------------- D step
            with autocast():
                fake = g_train(z, real_labels)  # one G forward serves both steps, as in DCGAN
                real_logits, loss_d = discriminator_step_losses(d_train, augment, real, fake.detach(),
                                                            real_labels, config, batches.quarter(step))
                if config.r1_gamma and step % config.r1_every == 0:  # lazy R1
                    r1 = r1_penalty(discriminator, real, real_labels, augment)
                    loss_d = loss_d + config.r1_gamma / 2 * config.r1_every * r1
            optimizer_step(loss_d, optimizer_d, scaler_d)
            _adapt(ada, real_logits, batches, world_size)
            # ---------------------------------------------------------------- G step
            with autocast(), _frozen(discriminator):  # D only passes gradients through to G
                loss_g = generator_loss(config.loss, d_frozen(augment(fake), real_labels))
            optimizer_step(loss_g, optimizer_g, scaler_g)
            # ---------------------------------------------------------------- EMA
            ema.update(images_seen=step * config.batch_size)
            # ---------------------------------------------------------------- logging
            losses.add(step, loss_d, loss_g)
            progress.update()
            log_step = step % config.log_every == 0 or step == config.max_steps
            if log_step:
                metrics = end_interval(step, losses, history, progress, last_good_checkpoint, world_size,
                                       None if ada is None else ada.p)
                if rank == 0 and report is not None:
                    report(step, metrics, samples=samples(generator_ema, step, config, device, num_classes))
            # ---------------------------------------------------------------- model selection
            if selection.due(step, config.max_steps):
                scores = selection.score(step, {"ema": generator_ema, "raw": generator},
                                         discriminator, None if ada is None else ada.p)
                if report is not None:
                    report(step, scores)
            # ---------------------------------------------------------------- checkpoint
            stop = stop_signal.agreed(log_step, world_size, device)  # SIGTERM / Ctrl-C
            if (config.checkpoint_every and step % config.checkpoint_every == 0) or stop or step == config.max_steps:
                # Never write a checkpoint after a non-finite loss: the last good one stays.
                raise_if_diverged(losses.first_nonfinite_step, last_good_checkpoint, world_size)
                if rank == 0:
                    last_good_checkpoint = _checkpoint(checkpoint_dir, step, models, optimizers, selection,
                                                       ada, config, data_hash, history, batches)
            if stop:  # the checkpoint is written: exit as the signal asked
                exit_on_signal(stop_signal, step, checkpoint_dir, progress)
            if log_step:
                losses.restart_clock()  # images/s leaves out logging, scoring and saving
    progress.close()
    return selected_result(generator_ema, discriminator, selection, history, config, resumed_from, device, ada)


# ------------------------------------------------------------------------- set up

class _Models(NamedTuple):
    generator: nn.Module  # with SyncBatchNorm layers when several GPUs train together
    discriminator: nn.Module
    generator_ema: nn.Module


class _Optimizers(NamedTuple):
    optimizer_g: torch.optim.Optimizer
    optimizer_d: torch.optim.Optimizer
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler


def _check_inputs(images: torch.Tensor, labels: torch.Tensor | None, config: TrainingConfig,
                  scorer: Scorer | None, parent: TrainingState | None) -> tuple[int, int, int]:
    """This process's rank, the world size and the class count (a fine-tune keeps its
    parent's classes that the new images lack), after checking the inputs."""
    if config.freeze_d_layers and parent is None:
        raise ValueError(f"training.freeze_d_layers is {config.freeze_d_layers} but no parent "
                         "was given to train_gan: FreezeD keeps a parent's discriminator blocks.")
    if not isinstance(images, ShardedImages) and (  # shards: uint8 N x C x H x W by construction
            not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4):
        raise ValueError("train_gan needs a uint8 tensor N x C x H x W (primary_images['images']) "
                         "or a ShardedImages split.")
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"Training images must be square, got {tuple(images.shape[2:])}.")
    if len(images) == 0:
        raise ValueError("There are no training images (all rows are validation rows?). "
                         "Add images or lower preprocessing.val_fraction.")
    num_classes = 0
    if config.conditional:
        if labels is None or labels.shape != (len(images),):
            raise ValueError("training.conditional is true but the images have no class labels "
                             "(one int per image, from their top-level folders).")
        num_classes = int(labels.max()) + 1
        if num_classes < 2 or int(labels.min()) < 0:
            raise ValueError(f"training.conditional needs at least two classes (top-level "
                             f"folders under the source), got {num_classes}.")
        if parent is not None:
            num_classes = max(num_classes, int(parent.generator.config.get("num_classes", 0)))
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if config.eval_every and scorer is None and rank == 0:
        raise ValueError("training.eval_every is on but no scorer was given to train_gan "
                         "(set training.eval_every=0 to train without model selection).")
    if config.batch_size % world_size:
        raise ValueError(f"training.batch_size ({config.batch_size}) must divide evenly among "
                         f"{world_size} processes.")
    return rank, world_size, num_classes


def _build_models(config: TrainingConfig, resolution: int, channels: int, num_classes: int,
                  device: torch.device, memory_format: torch.memory_format,
                  world_size: int, parent: TrainingState | None = None) -> _Models:
    torch.manual_seed(config.seed)  # same initial weights on every rank and every device
    architecture = {} if config.architecture == "dcgan" else {"architecture": config.architecture}
    generator = build_generator({**architecture, "resolution": resolution, "channels": channels,
                                 "latent_dim": config.latent_dim, "g_width": config.g_width,
                                 **({"num_classes": num_classes} if num_classes else {})})
    discriminator = build_discriminator(config.architecture, resolution, channels, config.d_width,
                                        config.spectral_norm, num_classes)
    generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    _start_from(parent, _Models(generator, discriminator, generator_ema), config)
    for module in (generator, discriminator, generator_ema):
        module.to(device, memory_format=memory_format)
    if world_size > 1 and device.type == "cuda":
        # Batch-norm statistics over the global batch, as on one device (torch's
        # SyncBatchNorm is GPU-only; on CPU each rank normalises with its own batch and
        # DDP broadcasts rank 0's running statistics).
        generator = nn.SyncBatchNorm.convert_sync_batchnorm(generator)
        discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
    return _Models(generator, discriminator, generator_ema)


def _checkpoint_folder(config: TrainingConfig, data_hash: str, images: torch.Tensor,
                       num_classes: int, parent: TrainingState | None) -> Path:
    """``<checkpoint_dir>/<key>``: the data, the weight-shaping settings and the parent."""
    _, channels, resolution, _ = images.shape
    key = config.checkpoint_key(data_hash, resolution, channels, num_classes,
                                parent=parent.sha256() if parent else None)
    return Path(config.checkpoint_dir) / key


def _build_optimizers(models: _Models, config: TrainingConfig, device: torch.device,
                      amp_dtype: torch.dtype | None) -> _Optimizers:
    # Fused Adam: one kernel for all parameters; with a GradScaler it also skips
    # overflowing fp16 steps on the device instead of asking the host.
    fused = device.type in ("cuda", "cpu")
    betas = (config.beta1, config.beta2)
    optimizer_g = torch.optim.Adam(models.generator.parameters(), lr=config.lr_g, betas=betas,
                                   fused=fused)
    # FreezeD's frozen blocks (training.freeze_d_layers) are left out of D's optimiser.
    trainable_d = [p for p in models.discriminator.parameters() if p.requires_grad]
    optimizer_d = torch.optim.Adam(trainable_d, lr=config.lr_d, betas=betas, fused=fused)
    # fp16 needs loss scaling; one scaler per optimizer, so an overflow in D's backward does
    # not skip G's step. Disabled (a no-op) for bf16 and fp32.
    scaler_g = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    scaler_d = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    return _Optimizers(optimizer_g, optimizer_d, scaler_g, scaler_d)


def _state_dicts(models: _Models, optimizers: _Optimizers) -> dict[str, Any]:
    """Every part's state dict under its checkpoint key (``generator``, ``optimizer_g``...)."""
    parts = {**models._asdict(), **optimizers._asdict()}
    return {name: part.state_dict() for name, part in parts.items()}


def _resume(checkpoint_dir: Path, config: TrainingConfig, rank: int, models: _Models, optimizers: _Optimizers,
            selection: ModelSelection, ada: AdaptiveAugment | None) -> tuple[int, list, Path | None, dict | None]:
    """Load the checkpoint to resume into the models, optimizers, model selection and the
    adaptive augmentation: (step, history, path, rank 0's data position then)."""
    path = checkpoint_to_resume(checkpoint_dir, config, models.generator.config, rank)
    if path is None:
        return 0, [], None, None
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for name, part in {**models._asdict(), **optimizers._asdict()}.items():
        part.load_state_dict(checkpoint[name])
    selection.load_state_dict(checkpoint.get("selection"))
    if ada is not None:  # the key shapes the weights, so a checkpoint of an ADA run has it
        ada.load_state_dict(checkpoint["ada"])
    log.info("Resuming training from %s (step %d of %d).", path, checkpoint["step"], config.max_steps)
    return checkpoint["step"], checkpoint["history"], path, checkpoint.get("data_position")


def _wrap_for_training(models: _Models, compile_models: bool, device: torch.device,
                       world_size: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    """G and D as the steps call them: DDP across ranks, compiled when asked.

    The third module is D for the G step: there D only carries gradients back to G, so it
    runs without DDP.
    """
    g_train, d_train, d_frozen = models.generator, models.discriminator, models.discriminator
    if world_size > 1:
        g_train = DistributedDataParallel(models.generator, device_ids=ddp_device_ids(device))
        d_train = DistributedDataParallel(models.discriminator, device_ids=ddp_device_ids(device))
    if compile_models:
        # torch.compile fuses batch norm, activations and scaling around the convolutions;
        # the first steps are slow while it compiles.
        g_train, d_train, d_frozen = map(torch.compile, (g_train, d_train, d_frozen))
    return g_train, d_train, d_frozen


def _connect(models: _Models, batches: Batches, ada: AdaptiveAugment | None,
             config: TrainingConfig) -> None:
    """Hand the networks their per-step streams and log their sizes: a FastGAN generator
    draws its noise from the stream ``Batches.draw`` reseeds every step, and the
    augmentation starts at the strength a resumed ADA run had reached."""
    if ada is not None:
        batches.augment_p = ada.p
    if hasattr(models.generator, "set_noise_stream"):
        models.generator.set_noise_stream(batches.noise_stream)
    log.info("%s networks: generator %s parameters, discriminator %s.", config.architecture,
             f"{parameter_count(models.generator):,}", f"{parameter_count(models.discriminator):,}")


def _adapt(ada: AdaptiveAugment | None, real_logits: torch.Tensor, batches: Batches,
           world_size: int) -> None:
    """StyleGAN2-ADA after the D step: r_t from D's logits on the reals it judged; the
    strength it sets applies from the next step on."""
    if ada is not None:
        ada.accumulate(real_logits)
        ada.step(batches.batch, world_size, reduce=sum_over_ranks)
        batches.augment_p = ada.p


def _progress_bar(config: TrainingConfig, start_step: int, rank: int) -> tqdm:
    return tqdm(total=config.max_steps, initial=start_step, unit="step", desc="training",
                disable=True if rank else None, dynamic_ncols=True)


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """No gradients into ``module``'s weights inside; afterwards each weight trains as it
    did before (FreezeD's frozen blocks stay frozen)."""
    trainable = [parameter for parameter in module.parameters() if parameter.requires_grad]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


def _start_from(parent: TrainingState | None, models: _Models, config: TrainingConfig) -> None:
    """A fine-tune: the parent's weights into the fresh networks (a checkpoint of this
    fine-tune, if one is resumed, replaces them after), then FreezeD's frozen blocks."""
    if parent is None:
        return
    load_parent_weights(parent, models.generator, models.discriminator, models.generator_ema)
    frozen = freeze_discriminator_blocks(models.discriminator, config.freeze_d_layers)
    log.info("Fine-tuning from the parent's networks%s.",
             f"; the first {config.freeze_d_layers} discriminator blocks frozen "
             f"({sum(p.numel() for p in frozen):,} parameters)" if frozen else "")


def _report_start(report: Report | None, rank: int, start_step: int, parent: TrainingState | None,
                  generator_ema: nn.Module, config: TrainingConfig, device: torch.device,
                  num_classes: int) -> None:
    """A fine-tune's step 0 in the run's sample series (rank 0, not when resuming): the
    parent's images for the grid's seeds."""
    if report is not None and parent is not None and rank == 0 and start_step == 0:
        report(0, {}, samples=samples(generator_ema, 0, config, device, num_classes, recalibrate=False))


def _adaptive_augment(config: TrainingConfig, parent: TrainingState | None) -> AdaptiveAugment | None:
    """ADA when on, from the parent's strength (when it had one), else ``augment_p``."""
    if not config.ada:
        return None
    start = parent.augment_p if parent is not None and parent.augment_p is not None else None
    return AdaptiveAugment(config.ada_target, config.ada_kimg,
                           p=config.augment_p if start is None else start)


def _checkpoint(directory: Path, step: int, models: _Models, optimizers: _Optimizers,
                selection: ModelSelection, ada: AdaptiveAugment | None, config: TrainingConfig,
                data_hash: str, history: list[dict[str, float]], batches: Batches) -> Path:
    """Save every state, the best generator so far and rank 0's data position; prune old ones."""
    states = {**_state_dicts(models, optimizers), "selection": selection.state_dict(),
              "data_position": batches.position(step)}
    if ada is not None:
        states["ada"] = ada.state_dict()
    path = save_checkpoint(directory, step, states, config, models.generator.config, data_hash,
                            history)
    prune_checkpoints(directory, config.keep_checkpoints)
    return path
