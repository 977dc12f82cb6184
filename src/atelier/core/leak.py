"""Augmentation leak measure: how often images hold a flat, sharp-edged square patch.

A generator trained with an augmentation that *leaks* paints the augmentation into its
samples. DiffAugment's ``cutout`` zeroes a square of side ``round(size / 2)``; the
generators it leaked into painted flat squares (pale, or the background's colour showing
through the subject) from half that side up to the whole of it, at any position.

:func:`square_patch_mask` finds, in each image, an axis-aligned window whose side lies
between half the cutout's side and the cutout's side that is

- flat: in every channel its standard deviation is at most ``tolerance``, and
- edged on all four sides: the strip of ``edge`` pixels just outside each side lies
  inside the image and its mean colour differs from the window's by more than
  ``contrast`` in some channel (a square patch or hole, not the open background around a
  subject, which runs off the image's border).

:func:`square_patch_fraction` is the fraction of images holding one. Real collections have
such patches of their own (flags, keycaps, windows, square symbols), so the figure means
something only beside the same fraction for the real images: a generator that does not
leak shows the real images' fraction or less; one that leaks shows more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from atelier.core.augment import CUTOUT_RATIO

FLAT_TOLERANCE = 0.1  # largest per-channel standard deviation of a flat window, in [0, 1] units
EDGE_CONTRAST = 0.15  # smallest colour difference between the window and each edge strip
EDGE_WIDTH = 2  # pixels of the strip outside each side


def cutout_side(resolution: int) -> int:
    """The side of DiffAugment's cutout square at ``resolution`` (as ``augment._cutout``)."""
    return int(resolution * CUTOUT_RATIO + 0.5)


def patch_sides(resolution: int) -> range:
    """The window sides searched at ``resolution``: half the cutout's side up to all of it."""
    side = cutout_side(resolution)
    return range(max(2, side // 2), side + 1, 2)


def _unit_float(images: Tensor) -> Tensor:
    """``images`` as float32 in [0, 1]: uint8 [0, 255] or float [-1, 1] (generator output)."""
    if images.ndim != 4:
        raise ValueError(f"Expected images N x C x H x W, got shape {tuple(images.shape)}.")
    if images.dtype == torch.uint8:
        return images.float() / 255
    if not images.dtype.is_floating_point:
        raise ValueError(f"Expected uint8 or float images, got dtype {images.dtype}.")
    return (images.float().clamp(-1, 1) + 1) / 2


def _edged_flat_windows(x: Tensor, side: int, tolerance: float, contrast: float,
                        edge: int) -> Tensor:
    """N x h x w: flat ``side`` windows whose four edge strips all differ from them."""
    height, width = x.shape[2:]
    mean = F.avg_pool2d(x, side, stride=1)  # N x C x (H - side + 1) x (W - side + 1)
    spread = (F.avg_pool2d(x * x, side, stride=1) - mean * mean).clamp_min(0).sqrt()
    edged = spread.amax(dim=1) <= tolerance
    rows = torch.arange(height - side + 1, device=x.device)
    cols = torch.arange(width - side + 1, device=x.device)
    across = F.avg_pool2d(x, (edge, side), stride=1)  # strips above / below a window
    down = F.avg_pool2d(x, (side, edge), stride=1)  # strips left / right of a window
    for offset in (-edge, side):  # the strip above (then below) each window
        index = rows + offset
        inside = (index >= 0) & (index <= height - edge)
        strip = across[:, :, index.clamp(0, height - edge), :]
        edged &= ((strip - mean).abs().amax(dim=1) > contrast) & inside.view(1, -1, 1)
    for offset in (-edge, side):  # left, then right
        index = cols + offset
        inside = (index >= 0) & (index <= width - edge)
        strip = down[:, :, :, index.clamp(0, width - edge)]
        edged &= ((strip - mean).abs().amax(dim=1) > contrast) & inside.view(1, 1, -1)
    return edged


def square_patch_mask(images: Tensor, sides: range | list[int] | None = None,
                      tolerance: float = FLAT_TOLERANCE, contrast: float = EDGE_CONTRAST,
                      edge: int = EDGE_WIDTH) -> Tensor:
    """A bool per image: does it hold a flat square patch edged on all four sides?

    ``images`` is uint8 ``N x C x H x W`` or float in [-1, 1] (square or not); ``sides``
    defaults to :func:`patch_sides` of the images' height. See the module docstring.
    """
    x = _unit_float(images)
    height, width = x.shape[2:]
    sides = patch_sides(height) if sides is None else sides
    found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for side in sides:
        if not 1 < side <= min(height, width) - 2 * edge:
            raise ValueError(f"A patch side must be in [2, {min(height, width) - 2 * edge}] "
                             f"for {height} x {width} images, got {side}.")
        found |= _edged_flat_windows(x, side, tolerance, contrast, edge).flatten(1).any(dim=1)
    return found


def square_patch_fraction(images: Tensor, sides: range | list[int] | None = None,
                          **thresholds: float) -> float:
    """The fraction of ``images`` holding a flat, edged square patch (see the module)."""
    if len(images) == 0:
        raise ValueError("No images to measure.")
    return float(square_patch_mask(images, sides, **thresholds).float().mean())
