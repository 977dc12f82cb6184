"""Decode, validate, convert and resize images; scan a folder; extract archives safely.

Everything here is plain Python on files and arrays (stdlib, numpy, Pillow, torch): no
Kedro, so the same functions serve the pipelines, the benchmarks and a torch-only box.

- :func:`scan_images` lists every file under a folder and inspects each one
  (:func:`inspect_image`): sha256, size, mode, and a status, ``ok`` or why it was rejected
  (:data:`STATUSES`). Nothing is skipped: dotfiles and odd extensions get a status too.
- :func:`extract_archive` unpacks a ``.zip`` / ``.tar[.gz|.bz2|.xz]`` / ``.tgz`` after
  checking every entry, so a hostile archive writes nothing at all.
- :func:`load_training_images` decodes the kept files into one uint8 ``N x C x H x W``
  tensor (:func:`load_training_image` per file).

Both scans decode in parallel over the available cores (:func:`resolve_workers`).
"""

from __future__ import annotations

import hashlib
import io
import math
import multiprocessing
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from atelier.core.storage import file_sha256
from atelier.errors import DataSourceError, UnsafeArchiveError

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

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

# Bumped whenever load_training_image's pixels change (filter, conversion, crop), because
# the dataset content hash keys caches (FID reference statistics) built from those pixels.
PREPROCESSING_VERSION = 1

# Below this many files a process pool costs more than it saves.
_MIN_FILES_FOR_PROCESSES = 64
# A complete PNG ends with this IEND chunk; Pillow decodes pixels without reading it, so a
# file cut just after its image data would otherwise pass as ok.
_PNG_END = b"IEND\xaeB`\x82"
# Modes whose samples are wider than 8 bits and need scaling rather than clipping.
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")

T = TypeVar("T")
R = TypeVar("R")


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


# --- parallelism ------------------------------------------------------------------------


def resolve_workers(workers: int | None) -> int:
    """The number of decoding processes: ``workers``, or one per core this process may use."""
    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1 (or null for one per core), got {workers}.")
        return int(workers)
    # sched_getaffinity honours taskset/cgroup CPU pinning; cpu_count() would oversubscribe.
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _process_context() -> multiprocessing.context.BaseContext:
    # fork on Linux: workers inherit the already-imported modules, whereas spawn would make
    # each one re-import torch (~2 s). Workers only run Pillow/numpy/hashlib code, never
    # torch or CUDA, so forking a process that has initialised them is safe (the same choice
    # torch's DataLoader makes). Elsewhere fork is unavailable or unsafe: use spawn.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _map_parallel(function: Callable[[T], R], items: Sequence[T], workers: int | None) -> list[R]:
    """``[function(item) for item in items]``, in order, over ``workers`` processes."""
    workers = min(resolve_workers(workers), len(items))
    if workers <= 1 or len(items) < _MIN_FILES_FOR_PROCESSES:
        return [function(item) for item in items]
    # A few chunks per worker: big enough to amortise pickling, small enough to balance
    # folders that mix thumbnails and 40-megapixel photos.
    chunksize = max(1, math.ceil(len(items) / (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=_process_context()) as pool:
        return list(pool.map(function, items, chunksize=chunksize))


# --- decoding ---------------------------------------------------------------------------


@contextmanager
def _pillow_limits(max_image_pixels: int | None) -> Iterator[None]:
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


def _decode(data: bytes, draft_size: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
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
        with _pillow_limits(max_image_pixels):
            image, (width, height) = _decode(data, draft_size=1)  # pixels unused: smallest
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
    inspections = _map_parallel(inspect, list_files(root), workers)
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


# --- archives ---------------------------------------------------------------------------


def is_archive(path: str | Path) -> bool:
    """Whether ``path`` names an archive that :func:`extract_archive` can unpack."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def image_root(source: str | Path, extract_dir: str | Path) -> Path:
    """The folder that manifest paths are relative to: the source, or where it was extracted."""
    return Path(extract_dir) if is_archive(source) else Path(source)


def _unsafe_name(name: str) -> str | None:
    """Why an archive entry name could land outside the extraction folder, or None."""
    if "\x00" in name:
        return "contains a NUL character"
    # Archives made on Windows may use backslashes; treat them as separators when checking.
    parts = PurePosixPath(name.replace("\\", "/"))
    drive = len(name) > 1 and name[0].isalpha() and name[1] == ":" and name[2:3] in ("", "/", "\\")
    if parts.is_absolute() or drive:
        return "is an absolute path"
    if ".." in parts.parts:
        return "contains '..'"
    return None


def _zip_entries(archive: zipfile.ZipFile) -> list[tuple[str, str | None, Any]]:
    entries = []
    for info in archive.infolist():
        file_type = stat.S_IFMT(info.external_attr >> 16)  # Unix mode, when a Unix tool made it
        if file_type == stat.S_IFLNK:
            problem = "is a symbolic link"
        elif file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
            problem = "is a device, FIFO or socket"
        else:
            problem = _unsafe_name(info.filename)
        entries.append((info.filename, problem, info))
    return entries


def _tar_entries(archive: tarfile.TarFile) -> list[tuple[str, str | None, Any]]:
    entries = []
    for member in archive.getmembers():
        if member.issym():
            problem = f"is a symbolic link to {member.linkname!r}"
        elif member.islnk():
            problem = f"is a hard link to {member.linkname!r}"
        elif member.ischr() or member.isblk() or member.isfifo():
            problem = "is a device or FIFO"
        elif not (member.isfile() or member.isdir()):
            problem = "is not a regular file or folder"
        else:
            problem = _unsafe_name(member.name)
        entries.append((member.name, problem, member))
    return entries


def _is_folder(info: zipfile.ZipInfo | tarfile.TarInfo) -> bool:
    return info.is_dir() if isinstance(info, zipfile.ZipInfo) else info.isdir()


def _check_entries(archive_path: Path, destination: Path,
                   entries: list[tuple[str, str | None, Any]]) -> None:
    unsafe = [(name, problem) for name, problem, _ in entries if problem]
    if unsafe:
        listed = "\n".join(f"  {name!r} {problem}" for name, problem in unsafe[:20])
        more = f"\n  ... and {len(unsafe) - 20} more" if len(unsafe) > 20 else ""
        raise UnsafeArchiveError(
            f"Refusing to extract {archive_path}: {len(unsafe)} entr"
            f"{'y' if len(unsafe) == 1 else 'ies'} could land outside {destination} or "
            f"point elsewhere on this machine:\n{listed}{more}\n"
            "Nothing was extracted. Remove these entries from the archive, or unpack it "
            "yourself and use the folder as the source."
        )
    counts = Counter(PurePosixPath(name.replace("\\", "/")).as_posix()
                     for name, _, info in entries if not _is_folder(info))
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise DataSourceError(
            f"{archive_path} holds several entries named {repeated[0]!r}; each file would "
            "overwrite the previous one. Rebuild the archive without duplicates."
        )


def extract_archive(archive: str | Path, destination: str | Path) -> Path:
    """Unpack ``archive`` into ``destination`` (replacing what an earlier call put there).

    Every entry is checked before anything is written: absolute paths, ``..`` components,
    symbolic and hard links, devices and FIFOs raise :class:`UnsafeArchiveError` naming
    the entries, and nothing is extracted. Only regular files and folders are written, as
    plain files (no permissions, owners or timestamps from the archive).

    The new tree is built in a temporary folder beside ``destination`` and renamed into
    place, so a failure leaves the previous extraction intact. ``destination`` is owned by
    this function: a non-empty folder it did not create is refused rather than replaced.

    Returns:
        ``destination``.
    """
    archive, destination = Path(archive), Path(destination)
    if not archive.is_file():
        raise FileNotFoundError(f"{archive} does not exist.")
    # The record beside the folder marks it as ours, so we only ever replace our own output.
    record = destination.with_name(destination.name + ".source")
    if destination.exists() and any(destination.iterdir()) and not record.exists():
        raise DataSourceError(
            f"{destination} already holds files that were not extracted by Atelier. Empty "
            "it or choose another extraction folder; it is replaced on every extraction."
        )
    staging: Path | None = None
    try:
        if str(archive).lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as opened:
                entries = _zip_entries(opened)
                _check_entries(archive, destination, entries)
                staging = _stage(destination)
                for name, _, info in entries:
                    if not _is_folder(info):
                        with opened.open(info) as source:
                            _write_entry(staging, name, source)
        else:
            with tarfile.open(archive, "r:*") as opened:
                entries = _tar_entries(opened)
                _check_entries(archive, destination, entries)
                staging = _stage(destination)
                for name, _, member in entries:
                    if member.isfile():
                        source = opened.extractfile(member)
                        assert source is not None  # regular members always have content
                        _write_entry(staging, name, source)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, RuntimeError, OSError,
            zlib.error) as error:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise DataSourceError(f"Cannot extract {archive} into {destination}: {error}") from None
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap_into_place(staging, destination)
    record.write_text(f"{archive.resolve()}\n")
    return destination


def _stage(destination: Path) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}."))


def _write_entry(staging: Path, name: str, source: io.IOBase) -> None:
    target = staging.joinpath(*PurePosixPath(name.replace("\\", "/")).parts)
    # Belt and braces: the names were checked already, but never write outside staging.
    if not target.resolve().is_relative_to(staging.resolve()):
        raise UnsafeArchiveError(f"Archive entry {name!r} resolves outside the extraction folder.")
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("xb") as handle:  # "x": never follow or overwrite something already there
        shutil.copyfileobj(source, handle, 1 << 20)


def _swap_into_place(staging: Path, destination: Path) -> None:
    if destination.exists():
        retired = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.old."))
        destination.rename(retired / destination.name)
        staging.rename(destination)
        shutil.rmtree(retired)
    else:
        staging.rename(destination)


# --- conversion for training ------------------------------------------------------------


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
        with _pillow_limits(max_image_pixels):
            image, _ = _decode(data, draft_size=resolution)
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
    results = _map_parallel(load, list(paths), workers)
    images = torch.from_numpy(np.stack([array for _, array in results]))
    return images, [sha256 for sha256, _ in results]


# --- dataset split and identity ---------------------------------------------------------


def assign_validation(sha256s: Sequence[str], val_fraction: float) -> torch.Tensor:
    """A bool tensor marking the images held out for validation.

    An image is held out when the first 64 bits of its sha256, read as a fraction of
    2**64, fall below ``val_fraction``. Membership depends on the image's bytes alone, so
    adding or removing other images never moves it between train and validation.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    return torch.tensor([int(sha[:16], 16) / 2**64 < val_fraction for sha in sha256s],
                        dtype=torch.bool)


def hash_dataset_content(sha256s: Sequence[str], resolution: int, channels: int) -> str:
    """A sha256 naming the preprocessed dataset: the set of images and how they were shaped.

    It covers the sorted image hashes, the resolution, the channels and
    :data:`PREPROCESSING_VERSION`, so it changes exactly when the pixels could change; the
    FID reference-statistics cache is keyed by it.
    """
    digest = hashlib.sha256(
        f"atelier-images v{PREPROCESSING_VERSION} {resolution}px {channels}ch\n".encode()
    )
    for sha in sorted(sha256s):
        digest.update(f"{sha}\n".encode())
    return digest.hexdigest()


# --- encoding ---------------------------------------------------------------------------


def encode_png(image: Image.Image) -> bytes:
    """Encode ``image`` as PNG bytes that depend only on its pixels.

    Fixed compression settings and no metadata chunks (no timestamps, no text), so the
    same pixels give the same bytes on every run with the same zlib.
    """
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=9, optimize=False)
    return buffer.getvalue()
