"""What the gallery draws: a grid of seeds, and a walk between two seeds' latents.

Images come from :func:`atelier.core.generate.generate_images` and its seeded latents, so a
seed shows the same picture here as in ``mlflow models serve`` and the pipeline's grids
(on the CPU, as the served model runs by default). A class-conditional generator draws
the chosen class for every image, or, as the served model does without a ``label``,
class ``seed % num_classes``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import nn

from atelier.core.generate import (
    cycled_labels,
    generate_images,
    image_grid,
    latent_vectors,
    to_uint8,
)

MAX_IMAGES = 64  # per grid: enough to compare, quick on a CPU


def seed_range(first_seed: int, count: int) -> list[int]:
    """``count`` consecutive seeds from ``first_seed`` (1 to ``MAX_IMAGES`` of them)."""
    if not 1 <= int(count) <= MAX_IMAGES:
        raise ValueError(f"Draw between 1 and {MAX_IMAGES} images, not {count}.")
    return list(range(int(first_seed), int(first_seed) + int(count)))


def _truncation(value: float | None) -> float | None:
    return float(value) if value and value > 0 else None


def class_labels(generator: nn.Module, seeds: list[int],
                 class_index: int | None) -> list[int] | None:
    """One class per seed for a conditional generator (``class_index``, or ``seed %
    num_classes`` when it is None); None for an unconditional one."""
    if not getattr(generator, "num_classes", 0):
        return None
    if class_index is None:
        return cycled_labels(generator, seeds)
    return [int(class_index)] * len(seeds)


def draw_seed_grid(generator: nn.Module, seeds: list[int], truncation: float | None = None,
                   class_index: int | None = None) -> Image.Image:
    """One image per seed, tiled about sqrt(N) wide, at the generator's own resolution.
    ``truncation`` <= 0 or None disables the truncation trick."""
    images = generate_images(generator, seeds, truncation=_truncation(truncation), device="cpu",
                             labels=class_labels(generator, seeds, class_index))
    return image_grid(images)


def slerp(start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` points from ``start`` to ``end`` (both included) along the great circle,
    with the norm interpolated linearly: spherical interpolation keeps every point at the
    typical radius of a Gaussian latent, where a straight line would pass nearer the
    origin (White, 2016, "Sampling Generative Networks"). Returns ``steps x D``."""
    if steps < 2:
        raise ValueError(f"An interpolation needs at least 2 steps, not {steps}.")
    t = torch.linspace(0, 1, steps, dtype=torch.float64).unsqueeze(1)
    a, b = start.double(), end.double()
    cosine = torch.dot(a / a.norm(), b / b.norm()).clamp(-1, 1)
    angle = torch.arccos(cosine)
    if float(angle.sin()) < 1e-6:  # (anti)parallel: the circle is undefined, use the line
        path = (1 - t) * a + t * b
    else:
        direction = (torch.sin((1 - t) * angle) * (a / a.norm())
                     + torch.sin(t * angle) * (b / b.norm())) / angle.sin()
        path = direction * ((1 - t) * a.norm() + t * b.norm())
    path[0], path[-1] = a, b  # the ends are exactly the two seeds' latents
    return path.to(start.dtype)


@torch.no_grad()
def draw_interpolation(generator: nn.Module, first_seed: int, last_seed: int, steps: int,
                       truncation: float | None = None, class_index: int | None = None,
                       ) -> Image.Image:
    """A row of ``steps`` images walking (:func:`slerp`) from ``first_seed``'s latent to
    ``last_seed``'s; the ends are those seeds' images. A conditional generator draws
    ``class_index`` throughout, or ``first_seed``'s class."""
    latents = latent_vectors([int(first_seed), int(last_seed)], generator.latent_dim,
                             _truncation(truncation))
    path = slerp(latents[0], latents[1], int(steps))
    labels = class_labels(generator, [int(first_seed)] * len(path), class_index)
    generator.eval()
    if labels is None:
        images = generator(path)
    else:
        images = generator(path, torch.tensor(labels, dtype=torch.int64))
    return image_grid(to_uint8(images), columns=len(path))


def save_png(image: Image.Image, folder: Path, name: str) -> Path:
    """Write ``image`` as ``folder/name.png`` (lossless) and return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    image.save(path, format="PNG")
    return path

