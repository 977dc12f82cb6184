"""atelier.core.leak: the square-hole measure that shows an augmentation leaking."""

from __future__ import annotations

import pytest
import torch

from atelier.core.augment import diff_augment
from atelier.core.leak import (
    cutout_side,
    edge_width,
    patch_sides,
    square_patch_fraction,
    square_patch_mask,
)


def _icons(count: int = 4, resolution: int = 32, seed: int = 0) -> torch.Tensor:
    """uint8 icons: a textured subject (no pixel near white or mid-grey) filling the centre
    of a white background, as icons composited on white look."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.full((count, 3, resolution, resolution), 255, dtype=torch.uint8)
    margin = resolution // 8
    side = resolution - 2 * margin
    texture = torch.randint(0, 90, (count, 3, side, side), dtype=torch.uint8, generator=generator)
    images[:, :, margin:margin + side, margin:margin + side] = texture
    return images


def test_sides_run_from_a_quarter_of_the_cutout_to_the_cutout():
    assert cutout_side(32) == 16 and cutout_side(64) == 32 and cutout_side(256) == 128
    assert list(patch_sides(32)) == list(range(4, 17))
    assert patch_sides(64)[0] == 8 and patch_sides(64)[-1] == 32
    assert len(patch_sides(256)) <= 16 and patch_sides(256)[0] == 32
    assert edge_width(32) == 1 and edge_width(64) == 2 and edge_width(128) == 4


@pytest.mark.parametrize("side", [4, 8, 16])
def test_a_background_coloured_hole_cut_into_the_subject_is_found(side):
    images = _icons(4)
    images[1, :, 8:8 + side, 9:9 + side] = 250  # white, as the leaking generator painted
    images[3, :, 10:10 + side, 6:6 + side] = 128  # cutout's mid-grey fill
    assert square_patch_mask(images).tolist() == [False, True, False, True]


def test_a_notch_open_to_the_background_on_one_side_is_found():
    images = _icons(2)
    images[1, :, 4:14, 10:20] = 255  # from the top margin into the subject: three sides
    assert square_patch_mask(images).tolist() == [False, True]


def test_the_open_background_thin_gaps_and_colours_of_the_subject_are_not_counted():
    images = _icons(3)
    images[0, :, 4:28, 14:17] = 255  # a 3 px white gap: narrower than the smallest side
    images[1, :, 8:20, 8:20] = torch.tensor([200, 30, 30], dtype=torch.uint8)[:, None, None]
    # a flat red square is neither the background's colour nor cutout's grey
    assert square_patch_mask(images).tolist() == [False, False, False]
    # A subject that fills less of the image: its background runs off the border.
    small = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    small[0, :, 12:20, 12:20] = 40
    assert square_patch_mask(small).tolist() == [False]


def test_a_round_hole_is_not_a_cutout_square():
    images = _icons(2)
    rows, cols = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    disc = (rows - 15.5) ** 2 + (cols - 15.5) ** 2 <= 6.5 ** 2  # 13 px across
    images[0][:, disc] = 255
    images[1, :, 10:22, 10:22] = 255  # the square of about the same area
    assert square_patch_mask(images).tolist() == [False, True]


def test_the_background_colour_is_read_from_the_frame():
    images = _icons(2)
    images[images == 255] = 0  # the same icons on black
    images[1, :, 8:16, 8:16] = 0
    assert square_patch_mask(images).tolist() == [False, True]


def test_uint8_and_generator_range_floats_agree():
    images = _icons(6)
    images[2, :, 8:20, 8:20] = 255
    as_float = images.float() / 127.5 - 1
    assert square_patch_mask(images).tolist() == square_patch_mask(as_float).tolist()


def test_cutout_shows_up_in_the_measure_in_proportion_to_its_probability():
    images = _icons(400, seed=1)
    assert square_patch_fraction(images) == 0.0
    as_float = images.float() / 127.5 - 1
    full = square_patch_fraction(diff_augment(as_float, "cutout", torch.Generator().manual_seed(0)))
    half = square_patch_fraction(diff_augment(as_float, "cutout", torch.Generator().manual_seed(0),
                                              strength=0.5))
    # A cut square counts where a square window fits it with subject on three sides: when
    # it lies inside the image or crosses one border, not when a corner of the image clips
    # it into a rectangle open on two sides.
    assert full > 0.2
    assert 0.3 * full < half < 0.7 * full


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="N x C x H x W"):
        square_patch_mask(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="uint8 or float"):
        square_patch_mask(torch.zeros(1, 3, 32, 32, dtype=torch.int32))
    with pytest.raises(ValueError, match="No images"):
        square_patch_fraction(torch.zeros(0, 3, 32, 32))
    with pytest.raises(ValueError, match="patch side"):
        square_patch_mask(torch.zeros(1, 3, 32, 32), sides=[31])
