"""Turn a kept file into training pixels: decode, convert the mode, resize, centre-crop.

:func:`load_training_images` decodes many files in parallel into one uint8
``N x C x H x W`` tensor (:func:`load_training_image` per file); :func:`encode_png` writes
pixels back as deterministic PNG bytes.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from atelier.core.errors import DataSourceError
from atelier.core.images.inspection import decode_image, pillow_limits
from atelier.core.images.parallel import map_parallel

# Modes whose samples are wider than 8 bits and need scaling rather than clipping.
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale a 16-bit, 32-bit integer or float image to 8-bit grayscale."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))
    if image.mode.startswith("I;16"):
        scale = 255.0 / 65535.0
    elif image.mode == "I":
        # 32-bit integer images almost always hold 16-bit samples (Pillow opens some 16-bit
        # files this way); values that already fit 8 bits are taken as they are.
        scale = 255.0 / 65535.0 if values.max(initial=0) > 255 else 1.0
    else:  # "F": floats are either in [0, 1] or already in [0, 255]
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), "L")


def convert_image(image: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode to ``L`` (channels=1) or ``RGB`` (channels=3).

    Wide samples (16-bit, 32-bit, float) are scaled to 8 bits rather than clipped, and
    transparency (alpha channels, palette or tRNS transparency) is composited on white, so
    transparent backgrounds do not turn into whatever colour the hidden pixels had.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}.")
    if image.mode in _WIDE_MODES:
        image = _to_8bit(image)
    if image.has_transparency_data:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")  # Pillow converts every mode to RGB, not every one to L
    return image.convert("L" if channels == 1 else "RGB")


def resize_center_crop(image: Image.Image, resolution: int) -> Image.Image:
    """Resize the shorter side to ``resolution`` and crop the centre square, in one resample.

    Cropping the centre square of the source and resampling it straight to the target is
    the same geometry as resize-then-crop, with one resampling instead of two. Shrinking
    uses Lanczos (Pillow widens the kernel with the scale factor, which antialiases);
    enlarging uses bicubic, which rings less than Lanczos on upscaled edges.
    """
    width, height = image.size
    side = min(width, height)
    box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
    resample = Image.Resampling.LANCZOS if side >= resolution else Image.Resampling.BICUBIC
    # reducing_gap: shrink by an integer factor with a box filter first when the image is
    # much larger; Pillow documents the result as indistinguishable, and it is much faster.
    return image.resize((resolution, resolution), resample, box=box, reducing_gap=3.0)


def load_training_image(
    path: str | Path,
    resolution: int,
    channels: int,
    max_image_pixels: int | None = Image.MAX_IMAGE_PIXELS,
) -> tuple[str, np.ndarray]:
    """Decode one file into a ``channels x resolution x resolution`` uint8 array.

    The first frame is used, EXIF orientation is applied, the mode is converted with
    :func:`convert_image` and the image is resized and centre-cropped with
    :func:`resize_center_crop`.

    Returns:
        The file's sha256 (so callers can check it is still the file they inspected) and
        the array.

    Raises:
        DataSourceError: The file cannot be read or decoded.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
        with pillow_limits(max_image_pixels):
            image, _ = decode_image(data, draft_size=resolution)
    except Exception as error:  # noqa: BLE001 - reported with the path, not Pillow's stack
        raise DataSourceError(f"Cannot decode {path}: {type(error).__name__}: {error}") from None
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:  # noqa: BLE001, S110 - malformed EXIF: use the pixels as stored
        pass
    image = resize_center_crop(convert_image(image, channels), resolution)
    array = np.asarray(image, dtype=np.uint8)
    array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return hashlib.sha256(data).hexdigest(), np.ascontiguousarray(array)


def _load_training_image_at(root: Path, resolution: int, channels: int,
                            max_image_pixels: int | None, relative: str) -> tuple[str, np.ndarray]:
    return load_training_image(root / relative, resolution, channels, max_image_pixels)


def load_training_images(
    root: str | Path,
    paths: Sequence[str],
    resolution: int,
    channels: int,
    *,
    max_image_pixels: int | None = Image.MAX_IMAGE_PIXELS,
    workers: int | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """Decode ``paths`` (relative to ``root``) over ``workers`` processes, in order.

    Returns:
        A uint8 tensor ``len(paths) x channels x resolution x resolution`` and each file's
        sha256, in the order of ``paths``.
    """
    if not paths:
        raise ValueError("load_training_images needs at least one path.")
    load = partial(_load_training_image_at, Path(root), resolution, channels, max_image_pixels)
    results = map_parallel(load, list(paths), workers, "decoding images")
    images = torch.from_numpy(np.stack([array for _, array in results]))
    return images, [sha256 for sha256, _ in results]

# --- encoding ---------------------------------------------------------------------------


def encode_png(image: Image.Image) -> bytes:
    """Encode ``image`` as PNG bytes that depend only on its pixels.

    Fixed compression settings and no metadata chunks (no timestamps, no text), so the
    same pixels give the same bytes on every run with the same zlib.
    """
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=9, optimize=False)
    return buffer.getvalue()
