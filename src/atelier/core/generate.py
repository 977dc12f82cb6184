"""Seeds -> images, deterministic per seed.

Each seed gives one latent vector drawn from its own ``torch.Generator`` on the CPU, so an
image depends only on its seed (not on batch composition, device or order), and the same
seed always gives the same image from the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from PIL import Image
from torch import nn
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import make_grid

from atelier.core.models import GeneratorCheckpoint


def latent_vectors(
    seeds: Sequence[int], latent_dim: int, truncation: float | Sequence[float] | None = None
) -> torch.Tensor:
    """Return a float32 tensor ``len(seeds) x latent_dim`` of N(0, 1) latents, one per seed.

    ``truncation`` (the truncation trick): components whose magnitude exceeds it are redrawn
    from the same seeded stream until they fall inside, trading variety for fidelity.
    ``None`` or a value <= 0 disables it; one value per seed is accepted.
    """
    if isinstance(truncation, (int, float)) or truncation is None:
        truncation = [truncation] * len(seeds)
    if len(truncation) != len(seeds):
        raise ValueError("Give one truncation value per seed, or a single value.")
    rows = []
    for seed, limit in zip(seeds, truncation, strict=True):
        stream = torch.Generator().manual_seed(int(seed))
        z = torch.randn(latent_dim, generator=stream)
        if limit is not None and limit > 0:
            outside = z.abs() > limit
            while outside.any():
                z[outside] = torch.randn(int(outside.sum()), generator=stream)
                outside = z.abs() > limit
        rows.append(z)
    return torch.stack(rows) if rows else torch.empty(0, latent_dim)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Map generator output in [-1, 1] to uint8 [0, 255], rounding as a PNG writer would."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def generate_images(
    generator: nn.Module,
    seeds: Sequence[int],
    truncation: float | Sequence[float] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    labels: Sequence[int] | None = None,
) -> torch.Tensor:
    """Generate one image per seed as a uint8 tensor ``N x C x H x W`` on ``device``.

    ``generator`` must expose ``latent_dim`` and map ``N x latent_dim`` latents to images in
    [-1, 1]. It is run in eval mode, in float32, in batches of ``batch_size``. ``labels``
    (one class index per seed) is for a class-conditional generator, which receives them
    as ``generator(z, labels)`` in the same batches; ``None`` calls ``generator(z)``.
    """
    device = torch.device(device) if device is not None else next(generator.parameters()).device
    if labels is not None and len(labels) != len(seeds):
        raise ValueError(
            f"Give one label per seed: got {len(labels)} labels for {len(seeds)} seeds."
        )
    was_training = generator.training
    generator.eval()
    z = latent_vectors(seeds, generator.latent_dim, truncation)
    try:
        if labels is None:
            batches = [to_uint8(generator(chunk.to(device))) for chunk in z.split(batch_size)]
        else:
            classes = torch.tensor([int(label) for label in labels], dtype=torch.int64)
            batches = [
                to_uint8(generator(chunk.to(device), chunk_labels.to(device)))
                for chunk, chunk_labels in zip(
                    z.split(batch_size), classes.split(batch_size), strict=True
                )
            ]
    finally:
        generator.train(was_training)
    if not batches:
        raise ValueError("generate_images needs at least one seed.")
    return torch.cat(batches)


def image_grid(images: torch.Tensor, columns: int | None = None) -> Image.Image:
    """A PIL image tiling uint8 ``N x C x H x W`` images (``columns`` default: about sqrt(N))."""
    columns = columns or math.ceil(math.sqrt(len(images)))
    return to_pil_image(make_grid(images.cpu(), nrow=columns, padding=2))


def cycled_labels(generator: nn.Module, seeds: Sequence[int]) -> list[int] | None:
    """For a class-conditional generator, class ``seed % num_classes`` per seed (every class
    equally often over consecutive seeds); None for an unconditional one."""
    num_classes = getattr(generator, "num_classes", 0)
    return [int(seed) % num_classes for seed in seeds] if num_classes else None


def generate_batches(generator: nn.Module, seeds: Sequence[int], batch_size: int = 256,
                     device: str | torch.device | None = None,
                     labels: Sequence[int] | None = None) -> Iterator[torch.Tensor]:
    """:func:`generate_images` batch by batch (only one batch is held at a time), for
    scoring many samples: uint8 ``B x C x H x W`` batches on ``device``. A class-conditional
    generator draws ``labels`` (one class per seed; default: :func:`cycled_labels`)."""
    if labels is None:
        labels = cycled_labels(generator, seeds)
    elif len(labels) != len(seeds):
        raise ValueError(f"Give one label per seed: {len(seeds)} seeds, {len(labels)} labels.")
    for start in range(0, len(seeds), batch_size):
        part = slice(start, start + batch_size)
        yield generate_images(generator, seeds[part], batch_size=batch_size, device=device,
                              labels=None if labels is None else labels[part])


def draw_sample_grid(generator: nn.Module, seeds: Sequence[int],
                     device: str | torch.device | None = None) -> Image.Image:
    """A grid of samples to look at. Unconditional: one image per seed, about sqrt(N)
    columns. Class-conditional: one row per class, in class order, each row the first
    ``ceil(len(seeds) / num_classes)`` seeds with that class, so each column shares one
    latent and shows what the class alone changes."""
    num_classes = getattr(generator, "num_classes", 0)
    if not num_classes:
        return image_grid(generate_images(generator, seeds, device=device))
    row_seeds = list(seeds)[: math.ceil(len(seeds) / num_classes)]
    labels = [label for label in range(num_classes) for _ in row_seeds]
    images = generate_images(generator, row_seeds * num_classes, device=device, labels=labels)
    return image_grid(images, columns=len(row_seeds))


def class_names_of(checkpoint: GeneratorCheckpoint) -> tuple[str, ...]:
    """The names of a generator's classes (label ``i`` is name ``i``): the checkpoint's
    ``class_names``, else, for a conditional generator trained without names, ``"0"``,
    ``"1"``, ...; empty for an unconditional one."""
    num_classes = int(checkpoint.config.get("num_classes", 0))
    return checkpoint.class_names or tuple(str(index) for index in range(num_classes))
