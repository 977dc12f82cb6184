"""DiffAugment: policy parsing, the transforms' values, reproducibility, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from atelier.core.augment import augment_pair, diff_augment, parse_policy

FULL = "color,translation,cutout"


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 8, c: int = 3, size: int = 16, seed: int = 123) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=_seeded(seed)) * 2 - 1


def _official_diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """The algorithm of DiffAugment_pytorch.py (mit-han-lab/data-efficient-gans), global RNG."""
    n, _, h, w = x.shape
    for name in policy.split(","):
        if name == "color":
            x = x + (torch.rand(n, 1, 1, 1) - 0.5)
            gray = x.mean(dim=1, keepdim=True)
            x = (x - gray) * (torch.rand(n, 1, 1, 1) * 2) + gray
            mean = x.mean(dim=[1, 2, 3], keepdim=True)
            x = (x - mean) * (torch.rand(n, 1, 1, 1) + 0.5) + mean
        elif name == "translation":
            sy, sx = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
            ty = torch.randint(-sy, sy + 1, size=[n, 1, 1])
            tx = torch.randint(-sx, sx + 1, size=[n, 1, 1])
            gb, gy, gx = torch.meshgrid(
                torch.arange(n), torch.arange(h), torch.arange(w), indexing="ij"
            )
            gy = torch.clamp(gy + ty + 1, 0, h + 1)
            gx = torch.clamp(gx + tx + 1, 0, w + 1)
            x_pad = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
            x = x_pad.permute(0, 2, 3, 1).contiguous()[gb, gy, gx].permute(0, 3, 1, 2)
        elif name == "cutout":
            ch, cw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
            oy = torch.randint(0, h + (1 - ch % 2), size=[n, 1, 1])
            ox = torch.randint(0, w + (1 - cw % 2), size=[n, 1, 1])
            gb, gy, gx = torch.meshgrid(
                torch.arange(n), torch.arange(ch), torch.arange(cw), indexing="ij"
            )
            gy = torch.clamp(gy + oy - ch // 2, min=0, max=h - 1)
            gx = torch.clamp(gx + ox - cw // 2, min=0, max=w - 1)
            mask = torch.ones(n, h, w)
            mask[gb, gy, gx] = 0
            x = x * mask.unsqueeze(1)
    return x.contiguous()


# --- parse_policy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("color,translation,cutout", ("color", "translation", "cutout")),
        (" cutout , color ", ("cutout", "color")),
        ("translation", ("translation",)),
        ("none", ()),
        ("", ()),
        ("  none ", ()),
    ],
)
def test_parse_policy_accepts(policy, expected):
    assert parse_policy(policy) == expected


@pytest.mark.parametrize("policy", ["colour", "color,flip", "none,color", "color,", "Color"])
def test_parse_policy_refuses_unknown_names_and_says_what_to_fix(policy):
    with pytest.raises(ValueError, match="color, translation, cutout") as error:
        parse_policy(policy)
    assert "training.augment" in str(error.value)


def test_parse_policy_refuses_duplicates():
    with pytest.raises(ValueError, match="translation more than once"):
        parse_policy("translation,color, translation")


# --- identity, validation, reproducibility --------------------------------------------


@pytest.mark.parametrize(("policy", "strength"), [(FULL, 0.0), ("none", 1.0), ((), 1.0)])
def test_identity_at_strength_zero_or_empty_policy(policy, strength):
    images = _images()
    out = diff_augment(images, policy, _seeded(), strength=strength)
    assert torch.equal(out, images)


@pytest.mark.parametrize("strength", [-0.1, 1.5])
def test_strength_outside_unit_interval_is_refused(strength):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        diff_augment(_images(), FULL, _seeded(), strength=strength)


def test_tuple_policy_is_checked_like_a_string():
    with pytest.raises(ValueError, match="training.augment"):
        diff_augment(_images(), ("color", "blur"), _seeded())


def test_same_seed_reproduces_and_another_seed_differs():
    images = _images()
    first = diff_augment(images, FULL, _seeded(7))
    again = diff_augment(images, FULL, _seeded(7))
    other = diff_augment(images, FULL, _seeded(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, images)


@pytest.mark.parametrize("policy", [FULL, "color", "translation", "cutout", "cutout,color"])
@pytest.mark.parametrize("size", [16, 28])
def test_matches_the_official_implementation_draw_for_draw(policy, size):
    images = _images(n=16, size=size)
    torch.manual_seed(2020)
    expected = _official_diff_augment(images, policy)
    torch.manual_seed(2020)
    out = diff_augment(images, policy)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


# --- the transforms' values -----------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_color_on_a_constant_image_shifts_it_by_the_brightness_draw(channels):
    images = torch.full((64, channels, 8, 8), 0.25)
    shift = diff_augment(images, "color", _seeded(3)) - images
    per_image = shift.mean(dim=(1, 2, 3))
    # Saturation and contrast leave a constant image alone: only brightness moves it,
    # by one amount for the whole image.
    torch.testing.assert_close(
        shift, per_image.view(-1, 1, 1, 1).expand_as(shift), atol=1e-6, rtol=0
    )
    assert per_image.min() >= -0.5 and per_image.max() <= 0.5
    assert per_image.min() < -0.25 and per_image.max() > 0.25  # the draws spread over the range


def test_color_on_one_channel_scales_contrast_within_half_to_one_and_a_half():
    images = _images(n=32, c=1)
    out = diff_augment(images, "color", _seeded(4))
    deviation_in = images - images.mean(dim=(1, 2, 3), keepdim=True)
    deviation_out = out - out.mean(dim=(1, 2, 3), keepdim=True)
    ratio = (deviation_out * deviation_in).sum(dim=(1, 2, 3)) / deviation_in.square().sum(
        dim=(1, 2, 3)
    )
    torch.testing.assert_close(
        deviation_out, ratio.view(-1, 1, 1, 1) * deviation_in, atol=1e-5, rtol=0
    )
    assert ratio.min() >= 0.5 and ratio.max() <= 1.5


def test_color_keeps_gray_three_channel_images_gray():
    gray = _images(n=8, c=1).expand(8, 3, 16, 16)
    out = diff_augment(gray, "color", _seeded(5))
    torch.testing.assert_close(out[:, 0], out[:, 1], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[:, 0], out[:, 2], atol=1e-6, rtol=0)


def test_translation_moves_content_by_a_whole_offset_with_zero_fill():
    n, size, hot = 64, 32, (16, 16)
    one_hot = torch.zeros(n, 1, size, size)
    one_hot[:, :, hot[0], hot[1]] = 0.75
    moved = diff_augment(one_hot, "translation", _seeded(9))
    # Same seed, same draws: a blank image shows which pixels were filled with zeros.
    ones = diff_augment(torch.ones(n, 1, size, size), "translation", _seeded(9))
    max_shift = size // 8
    rows, cols = torch.arange(size).view(size, 1), torch.arange(size).view(1, size)
    offsets = set()
    for i in range(n):
        assert torch.count_nonzero(moved[i]) == 1
        assert moved[i].max() == 0.75
        _, row, col = torch.nonzero(moved[i])[0].tolist()
        dy, dx = row - hot[0], col - hot[1]
        assert abs(dy) <= max_shift and abs(dx) <= max_shift
        offsets.add((dy, dx))
        # Output (r, c) reads input (r - dy, c - dx): one where that is inside, zero outside.
        inside = (rows - dy >= 0) & (rows - dy < size) & (cols - dx >= 0) & (cols - dx < size)
        assert torch.equal(ones[i, 0], inside.float())
    assert {dy for dy, _ in offsets} >= {-max_shift, max_shift}
    assert len(offsets) > 20


def test_cutout_zeroes_a_half_size_square_clipped_at_the_border():
    n, size = 64, 16
    out = diff_augment(torch.ones(n, 3, size, size), "cutout", _seeded(11))
    side = size // 2
    full_squares = 0
    for i in range(n):
        assert torch.equal(out[i, 0], out[i, 1]) and torch.equal(out[i, 0], out[i, 2])
        zero_rows = torch.nonzero((out[i, 0] == 0).any(dim=1)).flatten()
        zero_cols = torch.nonzero((out[i, 0] == 0).any(dim=0)).flatten()
        height, width = len(zero_rows), len(zero_cols)
        # Contiguous rows and columns, and every pixel of their rectangle zeroed.
        assert zero_rows[-1] - zero_rows[0] + 1 == height
        assert zero_cols[-1] - zero_cols[0] + 1 == width
        assert torch.count_nonzero(out[i, 0] == 0) == height * width
        # At most the full square; the centre lies in the image, so at least half of it.
        assert side // 2 <= height <= side and side // 2 <= width <= side
        if height < side:
            assert zero_rows[0] == 0 or zero_rows[-1] == size - 1
        if width < side:
            assert zero_cols[0] == 0 or zero_cols[-1] == size - 1
        full_squares += height == side and width == side
    assert full_squares > n // 4


def test_strength_is_the_probability_of_applying_each_transform_per_image():
    n = 400
    images = _images(n=n, size=8)
    out = diff_augment(images, "color", _seeded(12), strength=0.3)
    unchanged = (out == images).flatten(1).all(dim=1)
    assert 0.6 < unchanged.float().mean() < 0.8  # expected 0.7
    both = diff_augment(images, "color,cutout", _seeded(12), strength=0.3)
    untouched = (both == images).flatten(1).all(dim=1)
    assert 0.4 < untouched.float().mean() < 0.58  # expected 0.7 * 0.7 = 0.49


# --- gradients, dtypes, memory format -------------------------------------------------


def test_gradients_flow_to_every_image():
    images = _images().requires_grad_()
    diff_augment(images, FULL, _seeded(13)).square().sum().backward()
    assert images.grad is not None and images.grad.shape == images.shape
    assert torch.isfinite(images.grad).all()
    assert (images.grad.abs().sum(dim=(1, 2, 3)) > 0).all()


def test_cutout_gradient_is_its_mask():
    images = torch.ones(8, 3, 16, 16, requires_grad=True)
    out = diff_augment(images, "cutout", _seeded(14))
    out.sum().backward()
    assert torch.equal(images.grad, out.detach())


def test_translation_gradient_lands_on_the_source_pixel():
    size, hot = 16, (8, 5)
    images = torch.zeros(1, 1, size, size)
    images[0, 0, hot[0], hot[1]] = 1.0
    images.requires_grad_()
    out = diff_augment(images, "translation", _seeded(15))
    row, col = torch.nonzero(out[0, 0]).flatten().tolist()
    assert (row, col) != hot  # this seed moves it
    out[0, 0, row, col].backward()
    expected = torch.zeros_like(images)
    expected[0, 0, hot[0], hot[1]] = 1.0
    assert torch.equal(images.grad, expected)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shape_and_dtype_are_kept(channels, dtype):
    images = _images(c=channels).to(dtype)
    out = diff_augment(images, FULL, _seeded(16))
    assert out.shape == images.shape and out.dtype == dtype
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_works_under_bf16_autocast(channels):
    images = _images(c=channels).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = diff_augment(images, FULL, _seeded(17))
        bf16_out = diff_augment(images.to(torch.bfloat16), FULL, _seeded(17))
    assert out.shape == images.shape and out.dtype == torch.float32
    assert bf16_out.dtype == torch.bfloat16
    torch.testing.assert_close(bf16_out.float(), out, atol=0.05, rtol=0)  # same draws
    out.sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_channels_last_input_gives_the_same_values_in_channels_last():
    images = _images()
    expected = diff_augment(images, FULL, _seeded(18))
    channels_last = images.contiguous(memory_format=torch.channels_last).requires_grad_()
    out = diff_augment(channels_last, FULL, _seeded(18))
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    out.sum().backward()
    assert channels_last.grad.shape == images.shape


# --- augment_pair ---------------------------------------------------------------------


def test_augment_pair_augments_both_batches_independently():
    real, fake = _images(seed=1), _images(seed=2)
    aug_real, aug_fake = augment_pair(real, fake, FULL, _seeded(19))
    generator = _seeded(19)
    assert torch.equal(aug_real, diff_augment(real, FULL, generator))
    assert torch.equal(aug_fake, diff_augment(fake, FULL, generator))
    assert not torch.equal(aug_real, real) and not torch.equal(aug_fake, fake)
    # Independent draws: the same batch passed as both comes back augmented differently.
    twice_real, twice_fake = augment_pair(real, real, "translation,cutout", _seeded(19))
    assert not torch.equal(twice_real, twice_fake)


def test_augment_pair_at_strength_zero_returns_both_unchanged():
    real, fake = _images(seed=1), _images(seed=2)
    aug_real, aug_fake = augment_pair(real, fake, FULL, _seeded(20), strength=0.0)
    assert torch.equal(aug_real, real) and torch.equal(aug_fake, fake)
