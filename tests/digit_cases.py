"""Handwritten digits (scikit-learn's 8 x 8 set, upscaled) and noise, as uint8 tensors or PNGs.

Shared by the metric and evaluation tests (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image


@functools.cache
def _digit_images() -> np.ndarray:
    from sklearn.datasets import load_digits

    return (load_digits().images * (255 / 16)).round().astype(np.uint8)


def digits(indices: Sequence[int], size: int = 32) -> torch.Tensor:
    """Digits ``indices`` (0 to 1796) as uint8 N x 1 x size x size (bicubic upscale)."""
    pictures = [
        np.asarray(Image.fromarray(_digit_images()[i]).resize((size, size), Image.BICUBIC))
        for i in indices
    ]
    return torch.from_numpy(np.stack(pictures))[:, None]


def noise(count: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Uniform per-pixel noise as uint8 N x 1 x size x size."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 1, size, size), generator=generator, dtype=torch.uint8)


def write_pngs(folder: Path, images: torch.Tensor) -> Path:
    """Write uint8 N x C x H x W images as ``folder/00000.png``, ... (grayscale or RGB)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        array = image.permute(1, 2, 0).numpy()
        Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(folder / f"{index:05d}.png")
    return folder
