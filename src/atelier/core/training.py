"""The GAN training loop: DCGAN on a uint8 image tensor, with AMP, EMA, checkpoints and DDP.

``train_gan`` is the whole loop, top to bottom. It runs in one process, or in each process
of a ``torch.distributed`` group (one rank per GPU, or per CPU process with gloo). Three
ways to start it:

- in process: ``train_gan(images, TrainingConfig.from_params(params), data_hash=...)``;
- ``launch_training(...)`` (what the Kedro node calls): ``training.devices`` processes on
  this machine, the calling process being rank 0, so the ``report`` callback runs in it;
- ``torchrun`` on this module's command line, for several GPUs or machines::

    torchrun --nproc-per-node=8 -m atelier.core.training \\
        --data data/03_primary/images.pt --params conf/base/parameters_training.yml \\
        --output data/06_models/generator.pt [--set max_steps=20000 ...]

Checkpoints go to ``<training.checkpoint_dir>/<first 12 hex digits of the data hash>/``, so
new images start a new run while a reverted dataset finds its own checkpoints again.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime
import logging
import os
import random
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from atelier.core.generate import generate_images
from atelier.core.models import Discriminator, Generator
from atelier.core.storage import write_atomically
from atelier.errors import CheckpointMismatchError, TrainingDivergedError

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
# Parameters that shape the weights: a checkpoint is resumed only when all of them match.
# The others (max_steps, device, precision, logging and checkpoint cadence...) may change
# between a run and its resumption.
WEIGHT_PARAMETERS = (
    "seed", "batch_size", "latent_dim", "g_width", "d_width", "lr_g", "lr_d",
    "beta1", "beta2", "loss", "ema_decay", "flip",
)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The ``training:`` parameters (documented in ``conf/base/parameters_training.yml``)."""

    seed: int
    device: str
    devices: int
    max_steps: int
    batch_size: int
    latent_dim: int
    g_width: int
    d_width: int
    lr_g: float
    lr_d: float
    beta1: float
    beta2: float
    loss: str
    ema_decay: float
    precision: str
    compile: bool
    channels_last: str | bool
    data_on_device: str | bool
    flip: bool
    log_every: int
    sample_every: int
    checkpoint_every: int
    keep_checkpoints: int
    checkpoint_dir: str
    resume: str
    deterministic: bool
    num_sample_images: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TrainingConfig:
        """Build and validate the config from the ``training`` parameters dict."""
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(params) - set(names))
        missing = sorted(set(names) - set(params))
        if unknown:
            raise ValueError(
                f"Unknown training parameter(s) {unknown}. Known parameters: {names} "
                "(see conf/base/parameters_training.yml)."
            )
        if missing:
            raise ValueError(
                f"Missing training parameter(s) {missing}; conf/base/parameters_training.yml "
                "defines them all."
            )
        values = {}
        for field in dataclasses.fields(cls):
            value = params[field.name]
            if field.type == "int":
                value = _as_int(field.name, value)
            elif field.type == "float":
                value = _as_float(field.name, value)
            elif field.type == "bool":
                value = _as_bool(field.name, value)
            elif field.type == "str | bool":
                value = value if value == "auto" else _as_bool(field.name, value)
            else:
                value = str(value)
            values[field.name] = value
        config = cls(**values)
        config._validate()
        return config

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def _validate(self) -> None:
        problems = []
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            problems.append(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        for name in ("devices", "max_steps", "batch_size", "latent_dim", "g_width", "d_width",
                     "log_every", "keep_checkpoints", "num_sample_images"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("seed", "sample_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be 0 or more, got {getattr(self, name)}")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("beta1", "beta2", "ema_decay"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name, allowed in (("loss", ("bce", "hinge")), ("resume", ("auto", "never")),
                              ("precision", ("auto", "bf16", "fp16", "fp32"))):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.sample_every % self.log_every:
            problems.append(
                f"sample_every ({self.sample_every}) must be a multiple of log_every "
                f"({self.log_every}) (samples are reported with the losses), or 0 for none"
            )
        if self.batch_size % self.devices:
            problems.append(
                f"batch_size ({self.batch_size}) is the global batch; it must divide evenly "
                f"among devices ({self.devices})"
            )
        if problems:
            raise ValueError("Invalid training parameters: " + "; ".join(problems) + ".")


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not float(value).is_integer():
        raise ValueError(f"training.{name} must be a whole number, got {value!r}.")
    return int(float(value))


def _as_float(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"training.{name} must be a number, got {value!r}.") from None


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise ValueError(f"training.{name} must be true or false, got {value!r}.")


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


def train_gan(
    images: torch.Tensor,
    config: TrainingConfig,
    *,
    data_hash: str,
    report: Report | None = None,
) -> TrainingResult:
    """Train a DCGAN on ``images`` (uint8 ``N x C x H x W``, the training rows only).

    ``data_hash`` identifies the dataset (``primary_images["content_hash"]``): checkpoints
    are kept per dataset. Resumes from the newest checkpoint when ``config.resume`` is
    ``auto``. Inside a ``torch.distributed`` group, each rank trains on its own shard
    (``images[rank::world_size]``) with ``batch_size / world_size`` images per step; only
    rank 0 reports and writes checkpoints.
    """
    # ---------------------------------------------------------------- set up
    _check_images(images)
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if config.batch_size % world_size:
        raise ValueError(f"training.batch_size ({config.batch_size}) must divide evenly among "
                         f"{world_size} processes.")
    local_batch = config.batch_size // world_size
    device = _training_device(config.device, rank)
    amp_dtype = _autocast_dtype(config.precision, device)
    _, channels, resolution, _ = images.shape
    checkpoint_dir = Path(config.checkpoint_dir) / data_hash[:12]

    torch.manual_seed(config.seed)  # same initial weights on every rank and every device
    np.random.seed(config.seed)
    random.seed(config.seed)
    generator = Generator(resolution, channels, config.latent_dim, config.g_width)
    discriminator = Discriminator(resolution, channels, config.d_width)
    generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    # channels_last (NHWC) lets cuDNN pick tensor-core convolutions on GPU; on CPU it made
    # these small fp32 convolutions 2x slower, hence 'auto' = CUDA only.
    channels_last = device.type == "cuda" if config.channels_last == "auto" else config.channels_last
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for module in (generator, discriminator, generator_ema):
        module.to(device, memory_format=memory_format)
    if world_size > 1 and device.type == "cuda":
        # Batch-norm statistics over the global batch, as on one device (torch's
        # SyncBatchNorm is GPU-only; on CPU each rank normalises with its own batch and
        # DDP broadcasts rank 0's running statistics).
        generator = nn.SyncBatchNorm.convert_sync_batchnorm(generator)
        discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
    # Fused Adam: one kernel for all parameters; with a GradScaler it also skips
    # overflowing fp16 steps on the device instead of asking the host.
    fused = device.type in ("cuda", "cpu")
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=config.lr_g,
                                   betas=(config.beta1, config.beta2), fused=fused)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d,
                                   betas=(config.beta1, config.beta2), fused=fused)
    # fp16 needs loss scaling; one scaler per optimizer, so an overflow in D's backward does
    # not skip G's step. Disabled (a no-op) for bf16 and fp32.
    scaler_g = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    scaler_d = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    autocast = partial(torch.autocast, device.type, dtype=amp_dtype or torch.bfloat16,
                       enabled=amp_dtype is not None)

    start_step, history, resumed_from = 0, [], None
    checkpoint_path = _checkpoint_to_resume(checkpoint_dir, config, resolution, channels, rank)
    if checkpoint_path is not None:
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        generator.load_state_dict(checkpoint["generator"])
        discriminator.load_state_dict(checkpoint["discriminator"])
        generator_ema.load_state_dict(checkpoint["generator_ema"])
        optimizer_g.load_state_dict(checkpoint["optimizer_g"])
        optimizer_d.load_state_dict(checkpoint["optimizer_d"])
        scaler_g.load_state_dict(checkpoint["scaler_g"])
        scaler_d.load_state_dict(checkpoint["scaler_d"])
        _restore_rng_states(checkpoint["rng"])
        start_step, history, resumed_from = checkpoint["step"], checkpoint["history"], checkpoint_path
        log.info("Resuming training from %s (step %d of %d).", checkpoint_path, start_step,
                 config.max_steps)
    last_good_checkpoint = resumed_from

    # The whole dataset stays on the training device as uint8 when it fits: a batch is an
    # index lookup there, no decoding and no host-to-device copy per step.
    shard = images[rank::world_size]
    data_device = device if _data_fits_on(device, shard, config.data_on_device) else torch.device("cpu")
    shard = shard.to(data_device)
    if data_device != device and device.type == "cuda":
        shard = shard.pin_memory()  # host batches then copy asynchronously
    log.info("Training %dx%d, %d channel(s), on %s (%d of %d training images on this rank, "
             "held on %s), precision %s, batch %d.", resolution, resolution, channels, device,
             len(shard), len(images), data_device, amp_dtype or torch.float32, config.batch_size)
    # Batches, flips and latents come from a stream reseeded from (seed, rank, step) at each
    # step, so a resumed run draws exactly what an uninterrupted one would have.
    sampler = torch.Generator(data_device)

    g_train, d_train, d_frozen = generator, discriminator, discriminator
    if world_size > 1:
        g_train = DistributedDataParallel(generator, device_ids=_device_ids(device))
        d_train = DistributedDataParallel(discriminator, device_ids=_device_ids(device))
        # In the G step D only carries gradients back to G, so it runs unwrapped.
    if config.compile:
        # torch.compile fuses batch norm, activations and scaling around the convolutions;
        # the first steps are slow while it compiles.
        g_train, d_train, d_frozen = map(torch.compile, (g_train, d_train, d_frozen))

    ema_params = list(generator_ema.parameters())
    ema_buffers = list(generator_ema.buffers())
    g_params, g_buffers = list(generator.parameters()), list(generator.buffers())
    sample_seeds = list(range(config.num_sample_images))
    # Running sums and the first non-finite step live on the device: reading them forces a
    # host sync, which happens only at logging and checkpoint steps.
    loss_sum_d = torch.zeros((), device=device)
    loss_sum_g = torch.zeros((), device=device)
    first_nonfinite_step = torch.full((), -1, dtype=torch.long, device=device)
    interval_steps, interval_start = 0, time.perf_counter()
    progress = tqdm(total=config.max_steps, initial=start_step, unit="step",
                    desc="training", disable=True if rank else None, dynamic_ncols=True)

    with _determinism(config.deterministic), _StopSignal() as stop_signal:
        for step in range(start_step + 1, config.max_steps + 1):
            # ---------------------------------------------------------------- batch
            sampler.manual_seed(_step_seed(config.seed, rank, step))
            index = torch.randint(len(shard), (local_batch,), device=data_device, generator=sampler)
            real = shard[index]
            if config.flip:
                flip = torch.rand(local_batch, 1, 1, 1, device=data_device, generator=sampler) < 0.5
                real = torch.where(flip, real.flip(3), real)
            z = torch.randn(local_batch, config.latent_dim, device=data_device, generator=sampler)
            real = real.to(device, non_blocking=True).float().div_(127.5).sub_(1)
            real = real.contiguous(memory_format=memory_format)
            z = z.to(device, non_blocking=True)

            # ---------------------------------------------------------------- D step
            with autocast():
                fake = g_train(z)  # one G forward serves both steps, as in the DCGAN recipe
                loss_d = _discriminator_loss(config.loss, d_train(real), d_train(fake.detach()))
            optimizer_d.zero_grad(set_to_none=True)
            scaler_d.scale(loss_d).backward()
            scaler_d.step(optimizer_d)
            scaler_d.update()

            # ---------------------------------------------------------------- G step
            discriminator.requires_grad_(False)  # D only passes gradients through to G
            with autocast():
                loss_g = _generator_loss(config.loss, d_frozen(fake))
            optimizer_g.zero_grad(set_to_none=True)
            scaler_g.scale(loss_g).backward()
            scaler_g.step(optimizer_g)
            scaler_g.update()
            discriminator.requires_grad_(True)

            # ---------------------------------------------------------------- EMA
            # Decay ramps up as (1 + step) / (10 + step) so that short runs do not average in
            # their first, random weights; batch-norm statistics are copied.
            ema_decay = min(config.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, g_params, 1 - ema_decay)
                torch._foreach_copy_(ema_buffers, g_buffers)

            # ---------------------------------------------------------------- logging
            loss_sum_d += loss_d.detach()
            loss_sum_g += loss_g.detach()
            nonfinite = ~torch.isfinite(loss_d.detach() + loss_g.detach())
            first_nonfinite_step.masked_fill_(nonfinite & (first_nonfinite_step < 0), step)
            interval_steps += 1
            progress.update()
            log_step = step % config.log_every == 0 or step == config.max_steps
            if log_step:
                _raise_if_diverged(first_nonfinite_step, last_good_checkpoint, world_size)
                loss_means = (loss_sum_d.item() / interval_steps, loss_sum_g.item() / interval_steps)
                elapsed = time.perf_counter() - interval_start  # after .item(): the device is done
                metrics = {
                    "loss_d": loss_means[0],
                    "loss_g": loss_means[1],
                    "images_per_sec": interval_steps * config.batch_size / elapsed,
                }
                history.append({"step": step, **metrics})
                progress.set_postfix(loss_d=f"{metrics['loss_d']:.3f}",
                                     loss_g=f"{metrics['loss_g']:.3f}",
                                     img_s=f"{metrics['images_per_sec']:.0f}")
                sample_step = config.sample_every and step % config.sample_every == 0
                if rank == 0 and report is not None:
                    samples = generate_images(generator_ema, sample_seeds, device=device) if sample_step else None
                    report(step, metrics, samples=samples)
                loss_sum_d.zero_()
                loss_sum_g.zero_()
                interval_steps = 0

            # ---------------------------------------------------------------- checkpoint
            # SIGTERM / Ctrl-C: checkpoint, then exit. Several ranks agree on it at log steps.
            stop = stop_signal.received is not None
            if world_size > 1:
                stop = log_step and _any_rank(stop, device)
            if (config.checkpoint_every and step % config.checkpoint_every == 0) or stop or step == config.max_steps:
                # Never write a checkpoint after a non-finite loss: the last good one stays.
                _raise_if_diverged(first_nonfinite_step, last_good_checkpoint, world_size)
                if rank == 0:
                    last_good_checkpoint = _save_checkpoint(checkpoint_dir, step, {
                        "generator": generator.state_dict(),
                        "discriminator": discriminator.state_dict(),
                        "generator_ema": generator_ema.state_dict(),
                        "optimizer_g": optimizer_g.state_dict(),
                        "optimizer_d": optimizer_d.state_dict(),
                        "scaler_g": scaler_g.state_dict(),
                        "scaler_d": scaler_d.state_dict(),
                    }, config, resolution, channels, data_hash, history)
                    _prune_checkpoints(checkpoint_dir, config.keep_checkpoints)
            if stop:
                progress.close()
                log.warning("Stopped at step %d on %s; checkpoint written to %s.", step,
                            signal.Signals(stop_signal.received or signal.SIGTERM).name,
                            checkpoint_dir)
                stop_signal.resend()  # default handlers: SIGTERM ends the process, SIGINT raises
                raise SystemExit(128 + (stop_signal.received or signal.SIGTERM))
            if log_step:
                interval_start = time.perf_counter()  # images/s leaves out logging and saving
    progress.close()

    result_generator = copy.deepcopy(generator_ema).cpu().to(memory_format=torch.contiguous_format)
    return TrainingResult(result_generator.eval(), history, config.max_steps, resumed_from, str(device))


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


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError("train_gan needs a uint8 tensor N x C x H x W (primary_images['images']).")
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"Training images must be square, got {tuple(images.shape[2:])}.")
    if len(images) == 0:
        raise ValueError("There are no training images (all rows are validation rows?). "
                         "Add images or lower preprocessing.val_fraction.")


def _training_device(setting: str, rank: int) -> torch.device:
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"training.device is {setting!r} but torch sees no CUDA device. "
                               "Set training.device to auto or cpu.")
        if dist.is_initialized() and dist.get_world_size() > 1:
            # one GPU per process: torchrun's LOCAL_RANK, or the rank on a single machine
            index = int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count()))
            setting = f"cuda:{index}"
        device = torch.device(setting)
        torch.cuda.set_device(device)
        return device
    return torch.device(setting)


def _device_ids(device: torch.device) -> list[int] | None:
    return [device.index] if device.type == "cuda" else None


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for fp32. 'auto': bf16 where the hardware computes in it
    (most CUDA GPUs; CPUs with AVX512-BF16 or AMX, where it is ~1.6x faster than fp32
    here), fp16 on older GPUs, else fp32 (emulated bf16 would be slower)."""
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu" and _cpu_has_native_bf16():
            precision = "bf16"
        else:
            precision = "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


def _cpu_has_native_bf16() -> bool:
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so guarded
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def _data_fits_on(device: torch.device, images: torch.Tensor, setting: str | bool) -> bool:
    if device.type == "cpu" or setting is True:
        return True
    if setting is False:
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return images.numel() < free // 4  # leave three quarters for the models and activations


def _step_seed(seed: int, rank: int, step: int) -> int:
    return ((seed * 1_000_003 + rank) * 1_000_000_007 + step) % 2**63


@contextlib.contextmanager
def _determinism(enabled: bool) -> Iterator[None]:
    """Deterministic kernels (bit-identical reruns) when enabled; else cuDNN autotuning."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.benchmark = not enabled
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]


class _StopSignal:
    """Records SIGTERM / SIGINT instead of dying mid-step; ``resend`` re-delivers it."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignal:
        if threading.current_thread() is threading.main_thread():  # only there can we listen
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def _record(self, signum: int, frame: Any) -> None:
        if self.received is None:
            log.warning("Received %s: finishing this step and writing a checkpoint.",
                        signal.Signals(signum).name)
        self.received = signum

    def resend(self) -> None:
        """Restore the previous handlers and deliver the signal to them (default: exit)."""
        self.__exit__()
        if self.received is not None:
            signal.raise_signal(self.received)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def _any_rank(flag: bool, device: torch.device) -> bool:
    agreed = torch.tensor(int(flag), device=device)
    dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
    return bool(agreed.item())


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


# ------------------------------------------------------------------------- checkpoints

def _checkpoint_to_resume(directory: Path, config: TrainingConfig, resolution: int,
                          channels: int, rank: int) -> Path | None:
    """The checkpoint this run continues from (rank 0 decides; the others follow)."""
    chosen: list[Path | None] = [None]
    if rank == 0:
        chosen[0] = _newest_matching_checkpoint(directory, config, resolution, channels)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(chosen, src=0)
    return chosen[0]


def _newest_matching_checkpoint(directory: Path, config: TrainingConfig, resolution: int,
                                channels: int) -> Path | None:
    existing = sorted(directory.glob("step_*.pt"))
    if config.resume == "never":
        if existing:
            log.info("training.resume is 'never': removing %d old checkpoint(s) from %s.",
                     len(existing), directory)
        for path in existing:
            path.unlink()
        return None
    if not existing:
        return None
    newest = existing[-1]
    checkpoint = torch.load(newest, map_location="cpu", weights_only=True, mmap=True)
    ours = {**{key: getattr(config, key) for key in WEIGHT_PARAMETERS},
            "resolution": resolution, "channels": channels}
    theirs = {**checkpoint["params"], **checkpoint["generator_config"]}
    differences = [f"{key}={theirs.get(key)!r} there, {value!r} now"
                   for key, value in ours.items() if theirs.get(key) != value]
    if differences:
        raise CheckpointMismatchError(
            f"Refusing to resume from {newest}: it was written with different parameters ("
            + "; ".join(differences) + "). To train from scratch with the new parameters, set "
            "training.resume=never (this deletes the checkpoints in that folder), or set "
            "training.checkpoint_dir to another folder."
        )
    if checkpoint["step"] > config.max_steps:
        raise CheckpointMismatchError(
            f"The newest checkpoint, {newest}, is at step {checkpoint['step']}, past "
            f"training.max_steps={config.max_steps}. Raise max_steps to continue from it, or "
            "set training.resume=never to start over."
        )
    return newest


def _save_checkpoint(directory: Path, step: int, states: dict[str, Any], config: TrainingConfig,
                     resolution: int, channels: int, data_hash: str,
                     history: list[dict[str, float]]) -> Path:
    """Write ``step_<step>.pt`` atomically; every value loads with ``weights_only=True``."""
    path = directory / f"step_{step:08d}.pt"
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "params": config.as_dict(),
        "generator_config": {"resolution": resolution, "channels": channels,
                             "latent_dim": config.latent_dim, "g_width": config.g_width},
        "data_hash": data_hash,
        **states,
        "rng": _rng_states(),
        "history": list(history),
    }
    write_atomically(path, lambda handle: torch.save(checkpoint, handle))
    return path


def _prune_checkpoints(directory: Path, keep: int) -> None:
    for old in sorted(directory.glob("step_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)


def _rng_states() -> dict[str, Any]:
    """Every global RNG, as tensors, lists and numbers (so ``weights_only`` loading works)."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": [version, list(python_state), gauss_next],
    }


def _restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_state = states["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"],
                         numpy_state["cached_gaussian"]))
    version, python_state, gauss_next = states["python"]
    random.setstate((version, tuple(python_state), gauss_next))


# ------------------------------------------------------------------------- launching

def launch_training(images: torch.Tensor, config: TrainingConfig, *, data_hash: str,
                    report: Report | None = None) -> TrainingResult:
    """Run ``train_gan`` in ``config.devices`` processes on this machine and return rank 0's result.

    The calling process is rank 0 (so ``report`` runs here); ranks 1.. are spawned and
    join a gloo (CPU) or NCCL (CUDA) group on a free local port. With one device, or when
    a process group already exists (torchrun), this is ``train_gan`` itself.
    """
    if config.devices == 1 or dist.is_initialized():
        return train_gan(images, config, data_hash=data_hash, report=report)
    backend = _backend(config.device)
    if backend == "nccl" and torch.cuda.device_count() < config.devices:
        raise RuntimeError(f"training.devices is {config.devices} but only "
                           f"{torch.cuda.device_count()} GPU(s) are visible.")
    port = _free_port()
    context = torch.multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_spawned_rank, daemon=True,
                        args=(rank, config.devices, port, backend, images, config, data_hash))
        for rank in range(1, config.devices)
    ]
    for worker in workers:
        worker.start()
    threads = torch.get_num_threads()
    try:
        _join_group(0, config.devices, port, backend)
        return train_gan(images, config, data_hash=data_hash, report=report)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(threads)
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.terminate()
        failed = [w.exitcode for w in workers if w.exitcode]
        if failed:
            log.error("Training worker process(es) exited with code(s) %s.", failed)


def _spawned_rank(rank: int, world_size: int, port: int, backend: str, images: torch.Tensor,
                  config: TrainingConfig, data_hash: str) -> None:
    logging.basicConfig(level=logging.INFO)
    _join_group(rank, world_size, port, backend)
    try:
        train_gan(images, config, data_hash=data_hash)
    finally:
        dist.destroy_process_group()


def _backend(device: str) -> str:
    uses_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if uses_cuda else "gloo"


def _join_group(rank: int, world_size: int, port: int, backend: str) -> None:
    if backend == "gloo":  # CPU processes share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=datetime.timedelta(minutes=10))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    """Command line for torchrun or a torch-only machine (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m atelier.core.training",
                                     description="Train Atelier's DCGAN on a primary image file.")
    parser.add_argument("--data", required=True, help="primary images file (data/03_primary/images.pt)")
    parser.add_argument("--params", required=True,
                        help="YAML file with a 'training:' section (conf/base/parameters_training.yml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one training parameter, e.g. --set max_steps=2000")
    parser.add_argument("--output", default="data/06_models/generator.pt",
                        help="where rank 0 writes {'config', 'state_dict'} of the EMA generator")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        import yaml  # only this command line needs it; the library itself does not
    except ImportError:
        raise SystemExit("Reading --params needs PyYAML: pip install pyyaml") from None
    params = yaml.safe_load(Path(args.params).read_text())["training"]
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        params[key.removeprefix("training.")] = yaml.safe_load(value)
    config = TrainingConfig.from_params(params)
    primary = torch.load(args.data, map_location="cpu", weights_only=True)
    images = primary["images"][~primary["is_val"]]

    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:  # started by torchrun
        dist.init_process_group(_backend(config.device))
        try:
            result = train_gan(images, config, data_hash=primary["content_hash"], report=_log_report)
        finally:
            dist.destroy_process_group()
    else:
        result = launch_training(images, config, data_hash=primary["content_hash"], report=_log_report)
    if int(os.environ.get("RANK", "0")) == 0:
        exported = {"config": result.generator.config, "state_dict": result.generator.state_dict()}
        write_atomically(args.output, lambda handle: torch.save(exported, handle))
        log.info("Wrote the EMA generator (step %d) to %s.", result.step, args.output)


def _log_report(step: int, metrics: dict[str, float], samples: torch.Tensor | None = None) -> None:
    log.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
