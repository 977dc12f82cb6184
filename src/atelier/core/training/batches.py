"""The training data on its device, and what each step draws from it.

The whole dataset stays on the training device as uint8 when it fits: a batch is an index
lookup there, no decoding and no host-to-device copy per step. Each rank samples its shard
``images[rank::world_size]`` without replacement, epoch by epoch, as a DataLoader with
``shuffle=True`` does (every image is seen once per epoch). The epoch's permutation comes
from a stream seeded from (seed, rank, epoch), the step's flips and latents from one
reseeded from (seed, rank, step), and the step's DiffAugment draws (of every image the
discriminator sees in the D, G and R1 passes) from a third one reseeded from (seed, rank,
step) (and a FastGAN generator's noise from a fourth), so a resumed run draws exactly
what an uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from atelier.core.augment import diff_augment, parse_policy
from atelier.core.training.config import TrainingConfig

# Keep the augmentation and generator-noise streams' seeds apart from the latent stream's
# for the same step.
_AUGMENT_SALT = 0x2545F4914F6CDD1D
_NOISE_SALT = 0x5851F42D4C957F2D


def _stream_seed(seed: int, rank: int, counter: int) -> int:
    return ((seed * 1_000_003 + rank) * 1_000_000_007 + counter) % 2**63


def _data_fits_on(device: torch.device, images: torch.Tensor, setting: str | bool) -> bool:
    if device.type == "cpu" or setting is True:
        return True
    if setting is False:
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return images.numel() < free // 4  # leave three quarters for the models and activations


class Batches:
    """This rank's images (and class labels) and the draws of each step."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, rank: int,
                 world_size: int, device: torch.device, config: TrainingConfig,
                 memory_format: torch.memory_format) -> None:
        shard = images[rank::world_size]
        data_device = device if _data_fits_on(device, shard, config.data_on_device) else torch.device("cpu")
        self.images = shard.to(data_device)
        if data_device != device and device.type == "cuda":
            self.images = self.images.pin_memory()  # host batches then copy asynchronously
        self.labels = None if labels is None else labels[rank::world_size].to(data_device)
        self.rank, self.world_size = rank, world_size
        self._set_streams(device, memory_format, config, world_size)
        self._permutations: dict[int, torch.Tensor] = {}

    def _set_streams(self, device: torch.device, memory_format: torch.memory_format,
                     config: TrainingConfig, world_size: int) -> None:
        """The per-step draws' settings and streams (shared with the sharded stream)."""
        self.device, self.memory_format = device, memory_format
        self.seed, self.latent_dim, self.flip = config.seed, config.latent_dim, config.flip
        self.batch = config.batch_size // world_size
        self.stream = torch.Generator(self._data_device())
        self.policy, self.augment_p = parse_policy(config.augment), config.augment_p
        self.augment_stream = torch.Generator(device)
        self.noise_stream = torch.Generator(device)  # a generator's noise inputs (FastGAN)

    def _data_device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return len(self.images)

    def close(self) -> None:
        """Release what the draws hold beyond the tensor (the sharded stream's fetcher)."""

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._permutations:
            stream = torch.Generator().manual_seed(_stream_seed(self.seed, self.rank, -1 - epoch))
            self._permutations = {epoch: torch.randperm(len(self.images), generator=stream)
                                  .to(self.images.device)}
        return self._permutations[epoch]

    def _indices(self, step: int) -> torch.Tensor:
        n = len(self.images)
        positions = torch.arange((step - 1) * self.batch, step * self.batch)
        epochs = positions // n
        index = torch.empty(self.batch, dtype=torch.long, device=self.images.device)
        for epoch in epochs.unique().tolist():
            here = (epochs == epoch).to(self.images.device)
            offsets = (positions % n).to(self.images.device)
            index[here] = self._permutation(epoch)[offsets[here]]
        return index

    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Step ``step``'s uint8 images and labels (None when unconditional), where the data is."""
        index = self._indices(step)
        return self.images[index], None if self.labels is None else self.labels[index]

    def position(self, step: int) -> dict[str, int | str]:
        """Where this rank's data stream is after ``step`` steps: the epoch, the offset in
        it, and what the stream runs over (kept in the checkpoints)."""
        consumed = step * self.batch
        return {"epoch": consumed // len(self), "offset": consumed % len(self),
                "images_per_epoch": len(self), "world_size": self.world_size, "source": "tensor"}

    def draw(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Step ``step``'s real images in [-1, 1] (flipped at random when ``training.flip``),
        their labels (None when unconditional) and latents, on the training device."""
        real, labels = self._batch(step)
        labels = None if labels is None else labels.to(self.device, non_blocking=True)
        self.stream.manual_seed(_stream_seed(self.seed, self.rank, step))
        self.noise_stream.manual_seed(_stream_seed(self.seed, self.rank, step) ^ _NOISE_SALT)
        if self.flip:
            flip = torch.rand(self.batch, 1, 1, 1, device=real.device, generator=self.stream) < 0.5
            real = torch.where(flip, real.flip(3), real)
        z = torch.randn(self.batch, self.latent_dim, device=real.device, generator=self.stream)
        real = real.to(self.device, non_blocking=True).float().div_(127.5).sub_(1)
        return (real.contiguous(memory_format=self.memory_format), labels,
                z.to(self.device, non_blocking=True))

    def augmentation(self, step: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """Step ``step``'s DiffAugment: ``training.augment`` at per-image probability
        ``training.augment_p``, every call drawing afresh from one stream reseeded for the
        step. The D step's reals and fakes, the G step's fakes and the R1 reals all go
        through it: the same transforms with the same per-image probability, independent
        draws for every image and every pass."""
        self.augment_stream.manual_seed(_stream_seed(self.seed, self.rank, step) ^ _AUGMENT_SALT)
        return partial(diff_augment, policy=self.policy, generator=self.augment_stream,
                       strength=self.augment_p)

    def quarter(self, step: int) -> int:
        """Step ``step``'s quarter (0 to 3) for FastGAN's discriminator to rebuild, from
        the step's seed alone (no draw, no device sync)."""
        return (_stream_seed(self.seed, self.rank, step) >> 17) % 4
