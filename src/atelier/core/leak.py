"""Augmentation leak measure: how often images hold a square hole cut into their subject.

A generator trained with an augmentation that *leaks* paints the augmentation into its
samples. DiffAugment's ``cutout`` zeroes a square of side ``round(size / 2)``: mid-grey in
the generator's [-1, 1] range. On RGB icons composited on white, the generator that leaked
it (the studio recipe at ``augment_p`` 1, 1,500 steps) painted blocky holes and notches of
the *background's* colour into its subjects, from about a quarter of the cutout's side up
to all of it, noisy around them and often open to the background on one side (the grids
under ``docs/images/quality/``).

:func:`square_patch_mask` finds, in each image, an axis-aligned square window whose side
lies between a quarter of the cutout's side and the cutout's side (at least 2 px) that is

- of one fill colour: at least ``FILL_SHARE`` of its pixels lie within ``tolerance`` (in
  every channel, [0, 1] units) of the image's background colour (the per-channel median
  of its one-pixel frame) or of cutout's mid-grey fill, and
- cut into the subject: of the four lines of ``edge`` pixels (1 at 32 px) just outside
  its sides, at least three lie inside the image and hold at least ``SUBJECT_SHARE`` of
  pixels that are *not* of that colour: the hole's edges are straight and sharp, as
  cutout's are, the subject starting on the very next line.

So a square hole in the subject (four sides) and a notch cut into its outline (three)
count, while the open background around a subject does not (it runs off the border, or
meets the subject on one or two sides), nor do round holes and the soft, curved gaps
between the blobs of a fragmented subject (fill-coloured pixels on the line next to any
window that fits them), nor thin gaps narrower than the smallest side.

:func:`square_patch_fraction` is the fraction of images holding one. Real collections have
such holes of their own (flags, keycaps, windows, square symbols), so the figure means
something only beside the same fraction for the real images: a generator that does not
leak shows about the real images' fraction; one that leaks shows more. Measured on the
emoji set of ``benchmarks/quality.py`` (32 x 32, ``--leak-from-grids`` on the committed
grids, 192 samples per recipe): real images 0.026, the leaking recipe's samples 0.068 and
0.094 (two sessions), the generators that never saw cutout (plain DCGAN, the default
recipe, the studio recipe) 0.010 to 0.026. The first version judged a 2 px strip outside
each side (two lines averaged); it also counted the curved white gaps of fragmented
samples (0.045 for the studio recipe, 0.025 for DCGAN) and caught fewer of the leaked
holes, whose subject edges are speckled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from atelier.core.augment import CUTOUT_RATIO

FILL_TOLERANCE = 0.12  # largest per-channel distance from the fill colour, in [0, 1] units
FILL_SHARE = 0.95  # share of a window's pixels that must be of the fill colour
SUBJECT_SHARE = 0.75  # share of an edge line's pixels that must not be of it
CUTOUT_FILL = 0.5  # cutout's zero in the generator's [-1, 1] range, in [0, 1] units
MAX_SIDES = 16  # window sides searched per image, evenly spaced


def cutout_side(resolution: int) -> int:
    """The side of DiffAugment's cutout square at ``resolution`` (as ``augment._cutout``)."""
    return int(resolution * CUTOUT_RATIO + 0.5)


def patch_sides(resolution: int) -> range:
    """Window sides searched: a quarter of the cutout's side up to all of it (at most
    ``MAX_SIDES`` of them, evenly spaced, so the cost stays flat at large resolutions)."""
    side = cutout_side(resolution)
    smallest = max(2, side // 4)
    return range(smallest, side + 1, max(1, -(-(side - smallest) // (MAX_SIDES - 1))))


def edge_width(resolution: int) -> int:
    """Pixels of the line judged outside each side: 1 at 32 px, growing with the image.

    The line right next to the window: cutout's edges are straight and sharp, so the
    subject starts on the very next pixel line along (almost) the whole side. A round gap
    or a soft-edged hole between blobs leaves fill-coloured pixels on that line. (A 2 px
    strip at 32 px, the first version, averaged a second line in and counted those.)
    """
    return max(1, resolution // 32)


def _unit_float(images: Tensor) -> Tensor:
    """``images`` as float32 in [0, 1]: uint8 [0, 255] or float [-1, 1] (generator output)."""
    if images.ndim != 4:
        raise ValueError(f"Expected images N x C x H x W, got shape {tuple(images.shape)}.")
    if images.dtype == torch.uint8:
        return images.float() / 255
    if not images.dtype.is_floating_point:
        raise ValueError(f"Expected uint8 or float images, got dtype {images.dtype}.")
    return (images.float().clamp(-1, 1) + 1) / 2


def background_colour(x: Tensor) -> Tensor:
    """N x C x 1 x 1: the per-channel median of each image's one-pixel frame."""
    frame = torch.cat([x[:, :, 0, :], x[:, :, -1, :], x[:, :, 1:-1, 0], x[:, :, 1:-1, -1]], dim=2)
    return frame.median(dim=2).values[:, :, None, None]


def _holes_of(x: Tensor, colour: Tensor, sides, tolerance: float, edge: int) -> Tensor:
    """A bool per image: a window of ``colour`` cut into the subject on three or four sides."""
    height, width = x.shape[2:]
    of_colour = ((x - colour).abs().amax(dim=1, keepdim=True) <= tolerance).float()
    found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for side in sides:
        filled = F.avg_pool2d(of_colour, side, stride=1)[:, 0] >= FILL_SHARE
        if not filled.any():
            continue
        rows = torch.arange(height - side + 1, device=x.device)
        cols = torch.arange(width - side + 1, device=x.device)
        across = F.avg_pool2d(1 - of_colour, (edge, side), stride=1)[:, 0]  # strips above/below
        down = F.avg_pool2d(1 - of_colour, (side, edge), stride=1)[:, 0]  # strips left/right
        subject_sides = torch.zeros(filled.shape, dtype=torch.int64, device=x.device)
        for offset in (-edge, side):
            index = rows + offset
            inside = (index >= 0) & (index <= height - edge)
            strip = across[:, index.clamp(0, height - edge), :]
            subject_sides += ((strip >= SUBJECT_SHARE) & inside.view(1, -1, 1)).long()
            index = cols + offset
            inside = (index >= 0) & (index <= width - edge)
            strip = down[:, :, index.clamp(0, width - edge)]
            subject_sides += ((strip >= SUBJECT_SHARE) & inside.view(1, 1, -1)).long()
        found |= (filled & (subject_sides >= 3)).flatten(1).any(dim=1)
    return found


def square_patch_mask(images: Tensor, sides: range | list[int] | None = None,
                      tolerance: float = FILL_TOLERANCE, edge: int | None = None) -> Tensor:
    """A bool per image: does it hold a square hole of a fill colour cut into its subject?

    ``images`` is uint8 ``N x C x H x W`` or float in [-1, 1] (square or not, any channel
    count); ``sides`` defaults to :func:`patch_sides` and ``edge`` to :func:`edge_width` of
    the images' smaller side. See the module docstring.
    """
    x = _unit_float(images)
    height, width = x.shape[2:]
    resolution = min(height, width)
    sides = patch_sides(resolution) if sides is None else sides
    edge = edge_width(resolution) if edge is None else edge
    for side in sides:
        if not 1 < side <= resolution - 2 * edge:
            raise ValueError(f"A patch side must be in [2, {resolution - 2 * edge}] "
                             f"for {height} x {width} images, got {side}.")
    grey = torch.full((1, x.size(1), 1, 1), CUTOUT_FILL, device=x.device)
    return (_holes_of(x, background_colour(x), sides, tolerance, edge)
            | _holes_of(x, grey, sides, tolerance, edge))


def square_patch_fraction(images: Tensor, sides: range | list[int] | None = None,
                          **thresholds: float) -> float:
    """The fraction of ``images`` holding a square hole cut into the subject (see the module)."""
    if len(images) == 0:
        raise ValueError("No images to measure.")
    return float(square_patch_mask(images, sides, **thresholds).float().mean())
