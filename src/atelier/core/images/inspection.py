"""Inspect one file (hash, decode, validate) and scan a folder of them.

:func:`inspect_image` gives every file an :class:`ImageInspection` with a status from
:data:`STATUSES`; :func:`scan_images` does it for every file under a folder, in parallel,
and marks repeated bytes as ``duplicate``. The decoding helpers here (Pillow's limits per
call, first frame only, truncated PNGs caught) are shared with :mod:`.convert`.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from atelier.core.images.parallel import map_parallel
from atelier.core.storage import file_sha256

#: Every status a file can get; all but ``ok`` are rejections.
STATUSES = (
    "ok",
    "empty",  # zero bytes
    "not_an_image",  # Pillow does not recognise the format (text, dotfiles, ...)
    "corrupt",  # recognised but does not decode: truncated or damaged
    "too_large",  # over the byte or pixel limit (decompression-bomb guard)
    "too_small",  # shorter side below the training resolution
    "duplicate",  # same bytes as a file earlier in path order, which is kept
    "unreadable",  # the file system refused to read it (permissions, broken link)
)

# A complete PNG ends with this IEND chunk; Pillow decodes pixels without reading it, so a
# file cut just after its image data would otherwise pass as ok.
_PNG_END = b"IEND\xaeB`\x82"


@dataclass(frozen=True)
class ImageInspection:
    """What :func:`inspect_image` found out about one file.

    ``width``/``height`` are after EXIF orientation (as the image will be used) and ``mode``
    is Pillow's mode as stored (``P``, ``RGBA``, ``I;16`` ...); all three are ``None`` when
    the file could not be decoded. ``detail`` says in words why a file was rejected.
    """

    path: str
    sha256: str
    bytes: int
    width: int | None
    height: int | None
    mode: str | None
    status: str
    detail: str = ""


# --- decoding ---------------------------------------------------------------------------


@contextmanager
def pillow_limits(max_image_pixels: int | None) -> Iterator[None]:
    # Pillow's limits are module globals; set them for this call only (in the worker that
    # decodes) and restore them, so one caller's limit never leaks into another's.
    saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS = max_image_pixels
    # Some libraries flip this on globally; truncated files must fail, not decode as grey.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x the limit; treat both as over the limit.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def decode_image(data: bytes, draft_size: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Decode the first frame; raise if the file is truncated or damaged.

    Returns the image and its size as stored (``draft_size`` may shrink the decoded one).
    """
    image = Image.open(io.BytesIO(data))
    size = image.size
    if draft_size:
        # JPEG only: libjpeg decodes at 1/2, 1/4 or 1/8 scale while both sides stay
        # >= draft_size. It still reads every byte (truncation still fails) but skips most
        # of the inverse DCT, which makes large photos about twice as cheap.
        image.draft(None, (draft_size, draft_size))
    image.load()  # the first frame of animations; damage and truncation surface here
    if image.format == "PNG" and data.rfind(_PNG_END) == -1:
        raise OSError("truncated PNG file (no IEND chunk)")
    return image, size


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # noqa: BLE001 - a malformed EXIF block should not reject readable pixels
        return 1


def inspect_image(
    root: str | Path,
    relative: str,
    *,
    max_file_bytes: int | None = None,
    max_image_pixels: int | None = Image.MAX_IMAGE_PIXELS,
    min_side: int = 0,
) -> ImageInspection:
    """Hash and decode ``root / relative`` and say whether it is a usable image.

    Args:
        root: The folder ``relative`` (a POSIX path) is relative to.
        max_file_bytes: Larger files are ``too_large`` without being decoded (None: no limit).
        max_image_pixels: Pillow's decompression-bomb limit (None: no limit); images with
            more pixels are ``too_large``.
        min_side: Images whose shorter side (after EXIF rotation) is below this are
            ``too_small``.

    Returns:
        An :class:`ImageInspection`; never raises for a bad file, only records why.
    """
    path = Path(root) / relative

    def rejected(status: str, detail: str, sha256: str = "", size: int = 0) -> ImageInspection:
        return ImageInspection(relative, sha256, size, None, None, None, status, detail)

    try:
        size = path.stat().st_size
        if max_file_bytes is not None and size > max_file_bytes:
            return rejected("too_large", f"{size:,} bytes, over the limit of {max_file_bytes:,}",
                            file_sha256(path), size)
        data = path.read_bytes()
    except OSError as error:
        return rejected("unreadable", error.strerror or str(error))
    sha256 = hashlib.sha256(data).hexdigest()
    if not data:
        return rejected("empty", "zero-byte file", sha256)
    try:
        with pillow_limits(max_image_pixels):
            image, (width, height) = decode_image(data, draft_size=1)  # pixels unused: smallest
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return rejected("too_large", str(error), sha256, size)
    except UnidentifiedImageError:
        return rejected("not_an_image", "not a format Pillow can read", sha256, size)
    except Exception as error:  # noqa: BLE001 - any decoder failure means a damaged file
        return rejected("corrupt", f"does not decode: {error}", sha256, size)
    if _orientation(image) in (5, 6, 7, 8):  # EXIF rotations by 90 or 270 degrees
        width, height = height, width
    status, detail = "ok", ""
    if min(width, height) < min_side:
        status, detail = "too_small", f"{width}x{height}, shorter side below {min_side}"
    return ImageInspection(relative, sha256, size, width, height, image.mode, status, detail)


# --- scanning ---------------------------------------------------------------------------


def list_files(root: str | Path) -> list[str]:
    """Every file under ``root``, recursively, as sorted POSIX paths relative to it.

    Symbolic links to files and folders are followed (DVC can link its cache into the
    workspace); a folder reached twice through links is listed once.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder.")
    files: list[str] = []
    visited: set[tuple[int, int]] = set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        info = os.stat(folder)
        if (info.st_dev, info.st_ino) in visited:
            subfolders.clear()  # a link cycle or a second link to the same folder
            continue
        visited.add((info.st_dev, info.st_ino))
        base = Path(folder).relative_to(root)
        files.extend((base / name).as_posix() for name in names)
    return sorted(files)


def scan_images(
    root: str | Path,
    *,
    max_file_bytes: int | None = None,
    max_image_pixels: int | None = Image.MAX_IMAGE_PIXELS,
    min_side: int = 0,
    workers: int | None = None,
) -> list[ImageInspection]:
    """Inspect every file under ``root`` (see :func:`inspect_image`), in path order.

    A file with the same bytes as an ``ok`` file earlier in path order becomes
    ``duplicate``: the first copy is kept, the others are recorded. Files rejected for
    another reason keep that reason. Decoding runs over ``workers`` processes (None: one
    per available core).
    """
    inspect = partial(inspect_image, Path(root), max_file_bytes=max_file_bytes,
                      max_image_pixels=max_image_pixels, min_side=min_side)
    inspections = map_parallel(inspect, list_files(root), workers, "inspecting images")
    first_seen: dict[str, str] = {}
    for index, found in enumerate(inspections):
        if found.status != "ok":
            continue
        if found.sha256 in first_seen:
            inspections[index] = ImageInspection(
                found.path, found.sha256, found.bytes, found.width, found.height, found.mode,
                "duplicate", f"same bytes as {first_seen[found.sha256]}")
        else:
            first_seen[found.sha256] = found.path
    return inspections
