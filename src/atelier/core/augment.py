"""Differentiable augmentation (DiffAugment) of the images the discriminator sees.

DiffAugment (Zhao, Liu, Lin, Zhu and Han, "Differentiable Augmentation for Data-Efficient
GAN Training", NeurIPS 2020, https://arxiv.org/abs/2006.10738) applies the same family of
random, differentiable transforms to every image the discriminator sees, real and fake,
in both the D step and the G step. With a few hundred or thousand images the
discriminator otherwise memorises the training set: its accuracy on real images goes to
one, its outputs stop carrying a useful gradient, and FID climbs. Augmenting only the
reals would teach the generator to produce augmented images; augmenting both, through
transforms that gradients pass through, lets D see many more distinct images while G
still learns the un-augmented distribution.

The transforms match the official implementation, ``DiffAugment_pytorch.py`` in
mit-han-lab/data-efficient-gans, draw for draw and in the same order (with
``generator=None`` and torch's global RNG seeded the same, a 3-channel float32 batch
gives the same result):

- ``color``: brightness (add U(-0.5, 0.5)), then saturation (scale each pixel's deviation
  from its mean over channels by U(0, 2); a no-op for one channel), then contrast (scale
  the deviation from the image's mean by U(0.5, 1.5)).
- ``translation``: shift by a random whole number of pixels in [-s, s] on each axis,
  s = round(size / 8), filling with zeros.
- ``cutout``: zero a square of side round(size / 2) centred on a uniformly drawn pixel;
  the square is clipped where it crosses the border.

Each draw is per image. Enable it with ``training.augment: color,translation,cutout`` (any
comma-separated subset, applied in the order written; ``none`` turns it off) in
``conf/base/parameters_training.yml``, and set how often each transform is applied with
``training.augment_p``. The training loop (``core/training/batches.py``,
``Batches.augmentation``) hands every image the discriminator sees through one
:func:`diff_augment` per pass: the D step's reals and fakes, the R1 penalty's reals and
the G step's fakes, with the same policy and probability, independent draws per image and
per pass, from a stream reseeded per step (a resumed run augments as an uninterrupted one).

Why the probability matters (what leaks): at ``strength`` 1, the paper's setting, the
discriminator never sees an image that was not transformed. Cutout is not invertible: no
image it sees shows the whole picture, so nothing ties the generator to the un-augmented
distribution where the transform hides it, and on a few thousand RGB icons a generator
trained for 1,500 steps painted white squares into its samples (the sample grids in
``benchmarks/README.md``, "Image quality at equal steps"). Applied with
probability ``p < 1`` per image, the identity is part of the transformation family and
the un-augmented images stay in what the discriminator judges: the condition under which
Karras et al. (2020, "Training Generative Adversarial Networks with Limited Data",
section 2.2) found augmentations non-leaking, in practice below about 0.8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

AUGMENTATIONS = ("color", "translation", "cutout")
TRANSLATION_RATIO = 0.125  # largest shift, as a fraction of the side
CUTOUT_RATIO = 0.5  # side of the zeroed square, as a fraction of the side


def parse_policy(policy: str) -> tuple[str, ...]:
    """Return the augmentation names in ``policy``, in order; ``"none"`` or ``""`` give ``()``.

    ``policy`` is a comma-separated subset of ``color``, ``translation``, ``cutout``, e.g.
    ``"color, translation,cutout"``; whitespace around names is ignored. An unknown,
    empty or repeated name raises ``ValueError``.
    """
    stripped = policy.strip()
    if stripped in ("", "none"):
        return ()
    names = tuple(name.strip() for name in stripped.split(","))
    for name in names:
        if name not in AUGMENTATIONS:
            raise ValueError(
                f"Unknown augmentation {name!r} in training.augment={policy!r}. Allowed: "
                f"{', '.join(AUGMENTATIONS)} (comma-separated, e.g. 'color,translation,cutout'), "
                "or 'none'. Fix training.augment in conf/base/parameters_training.yml."
            )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"training.augment={policy!r} names {', '.join(repeated)} more than once; "
            "list each augmentation once. Fix training.augment in "
            "conf/base/parameters_training.yml."
        )
    return names


def diff_augment(
    images: Tensor,
    policy: tuple[str, ...] | str,
    generator: torch.Generator | None = None,
    strength: float = 1.0,
) -> Tensor:
    """Return ``images`` (N x C x H x W, values in [-1, 1]) augmented by ``policy``.

    ``policy`` is a string for :func:`parse_policy` or the tuple it returns; the transforms
    run in its order (see the module docstring). Every random draw comes from
    ``generator``, which must live on the images' device (``None``: torch's global RNG), so
    the same seed gives the same result.

    ``strength`` in [0, 1] is the probability, like ADA's p, that each transform of the
    policy is applied to each image, drawn independently per image and per transform; an
    applied transform always has the full magnitude of the paper. 1 applies every
    transform to every image (the official behaviour, with no extra draws); 0 returns
    ``images`` itself, unchanged, as does an empty policy.

    The result is differentiable with respect to ``images``, keeps their dtype (also
    under autocast) and is channels_last when they are.
    """
    names = parse_policy(policy) if isinstance(policy, str) else parse_policy(",".join(policy))
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"Augmentation strength must be in [0, 1], got {strength}.")
    if images.ndim != 4:
        raise ValueError(f"Expected images N x C x H x W, got shape {tuple(images.shape)}.")
    if generator is not None and generator.device.type != images.device.type:
        raise ValueError(
            f"The augmentation generator is on {generator.device} but the images are on "
            f"{images.device}; create it with torch.Generator(device=images.device)."
        )
    if not names or strength == 0.0:
        return images
    channels_last = images.is_contiguous(memory_format=torch.channels_last)
    channels_last = channels_last and not images.is_contiguous()
    x = images
    for name in names:
        augmented = _TRANSFORMS[name](x, generator)
        if strength < 1.0:
            chosen = _uniform(x, generator, torch.float32) < strength
            augmented = torch.where(chosen, augmented, x)
        x = augmented
    if channels_last:
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def augment_pair(
    real: Tensor,
    fake: Tensor,
    policy: tuple[str, ...] | str,
    generator: torch.Generator | None = None,
    strength: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Return ``(real, fake)`` each augmented by ``policy``, for one discriminator step.

    Both batches get the same transforms with independent draws per image (reals first,
    then fakes, from the one ``generator``), as the official code augments each batch
    separately. The G step augments its fakes with :func:`diff_augment` and the same
    policy and strength.
    """
    return (
        diff_augment(real, policy, generator, strength),
        diff_augment(fake, policy, generator, strength),
    )


def _uniform(
    x: Tensor, generator: torch.Generator | None, dtype: torch.dtype | None = None
) -> Tensor:
    # One U(0, 1) per image, drawn in float32 whatever the images' dtype so that bf16 and
    # float32 batches see the same random numbers, then cast to the images' dtype.
    draw = torch.rand(x.size(0), 1, 1, 1, generator=generator, device=x.device)
    return draw.to(dtype or x.dtype)


def _color(x: Tensor, generator: torch.Generator | None) -> Tensor:
    x = x + (_uniform(x, generator) - 0.5)
    if x.size(1) > 1:
        gray = x.mean(dim=1, keepdim=True)
        x = (x - gray) * (_uniform(x, generator) * 2) + gray
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, generator) + 0.5) + mean


def _translation(x: Tensor, generator: torch.Generator | None) -> Tensor:
    n, _, height, width = x.shape
    max_dy, max_dx = int(height * TRANSLATION_RATIO + 0.5), int(width * TRANSLATION_RATIO + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (n, 1, 1), generator=generator, device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (n, 1, 1), generator=generator, device=x.device)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    rows = torch.arange(height, device=x.device).view(1, height, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, width)
    # Output pixel (i, j) reads input (i + dy, j + dx) from a copy with a one-pixel zero
    # border; any source outside the image is clamped onto that border, hence the zero fill.
    src_rows = (rows + dy + 1).clamp(0, height + 1)
    src_cols = (cols + dx + 1).clamp(0, width + 1)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)
    return padded[batch, src_rows, src_cols].permute(0, 3, 1, 2)


def _cutout(x: Tensor, generator: torch.Generator | None) -> Tensor:
    n, _, height, width = x.shape
    size_h, size_w = int(height * CUTOUT_RATIO + 0.5), int(width * CUTOUT_RATIO + 0.5)
    # Centre ranges as in the official code: [0, side] for an even square, [0, side) for odd.
    cy = torch.randint(
        0, height + (1 - size_h % 2), (n, 1, 1), generator=generator, device=x.device
    )
    cx = torch.randint(0, width + (1 - size_w % 2), (n, 1, 1), generator=generator, device=x.device)
    top, left = cy - size_h // 2, cx - size_w // 2
    rows = torch.arange(height, device=x.device).view(1, height, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, width)
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_TRANSFORMS = {"color": _color, "translation": _translation, "cutout": _cutout}
