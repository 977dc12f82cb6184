"""atelier.core.leak: the square-patch measure that shows an augmentation leaking."""

from __future__ import annotations

import pytest
import torch

from atelier.core.augment import diff_augment
from atelier.core.leak import cutout_side, patch_sides, square_patch_fraction, square_patch_mask


def _textured(count: int = 8, resolution: int = 32, seed: int = 0, low: int = 0) -> torch.Tensor:
    """uint8 images of random texture in [low, 255] (no flat region anywhere)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, 256, (count, 3, resolution, resolution), dtype=torch.uint8,
                         generator=generator)


def _disc_on_white(resolution: int = 32) -> torch.Tensor:
    """A flat-coloured disc on a white background: flat regions, but no edged square."""
    rows, cols = torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing="ij")
    inside = ((rows - resolution / 2) ** 2 + (cols - resolution / 2) ** 2) < (resolution * 0.4) ** 2
    image = torch.full((1, 3, resolution, resolution), 255, dtype=torch.uint8)
    image[0, :, inside] = torch.tensor([200, 120, 30], dtype=torch.uint8)[:, None]
    return image


def test_sides_run_from_half_the_cutout_to_the_cutout():
    assert cutout_side(32) == 16 and cutout_side(64) == 32 and cutout_side(256) == 128
    assert list(patch_sides(32)) == [8, 10, 12, 14, 16]
    assert list(patch_sides(64)) == list(range(16, 33, 2))


@pytest.mark.parametrize("side", [8, 12, 16])
def test_a_flat_square_painted_into_texture_is_found(side):
    images = _textured(4)
    images[1, :, 5:5 + side, 9:9 + side] = 240  # a pale square, as the leaking generator paints
    images[3, :, 10:10 + side, 4:4 + side] = torch.tensor([0, 90, 200], dtype=torch.uint8)[:, None, None]
    assert square_patch_mask(images).tolist() == [False, True, False, True]


def test_squares_smaller_than_half_the_cutout_and_open_backgrounds_are_not_counted():
    small = _textured(1)
    small[0, :, 4:10, 4:10] = 240  # 6 px: below half the cutout's 16
    assert square_patch_mask(small).tolist() == [False]
    # A flat disc on white: the background is flat but runs off the border, and windows
    # inside the disc have flat disc colour on every side: nothing edged on four sides.
    assert square_patch_mask(_disc_on_white()).tolist() == [False]


def test_a_square_at_the_border_is_not_edged_on_four_sides():
    images = _textured(1)
    images[0, :, 0:12, 0:12] = 240
    assert square_patch_mask(images).tolist() == [False]


def test_uint8_and_generator_range_floats_agree():
    images = _textured(6)
    images[2, :, 8:20, 8:20] = 30
    as_float = images.float() / 127.5 - 1
    assert square_patch_mask(images).tolist() == square_patch_mask(as_float).tolist()


def test_cutout_at_full_probability_shows_up_in_the_measure():
    images = _textured(200, seed=1, low=150)  # bright: cutout's mid-grey square stands out
    assert square_patch_fraction(images) == 0.0
    augmented = diff_augment(images.float() / 127.5 - 1, "cutout", torch.Generator().manual_seed(0))
    # The square is edged on four sides only when it lies fully inside the image, at least
    # 2 px from the border: centres in [10, 22] of [0, 32], about (13 / 33)^2 = 16 % of draws.
    assert 0.08 < square_patch_fraction(augmented) < 0.3
    half = diff_augment(images.float() / 127.5 - 1, "cutout", torch.Generator().manual_seed(0),
                        strength=0.5)
    assert square_patch_fraction(half) < square_patch_fraction(augmented)


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="N x C x H x W"):
        square_patch_mask(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="uint8 or float"):
        square_patch_mask(torch.zeros(1, 3, 32, 32, dtype=torch.int32))
    with pytest.raises(ValueError, match="No images"):
        square_patch_fraction(torch.zeros(0, 3, 32, 32))
    with pytest.raises(ValueError, match="patch side"):
        square_patch_mask(torch.zeros(1, 3, 32, 32), sides=[30])
