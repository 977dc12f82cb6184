"""Image files for ingestion tests: one of each bad kind, each mode, EXIF, animation.

Plain functions (not fixtures) so that core tests and pipeline tests share them:
``from image_cases import ...`` works because pytest puts ``tests/`` (the folder of the
root ``conftest.py``) on ``sys.path``.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

#: The resolution the cases are built around (the default preprocessing.resolution).
RESOLUTION = 32


def encode(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def gradient(width: int = 48, height: int = 48, mode: str = "RGB") -> Image.Image:
    """A smooth picture (compresses and decodes like a photo, unlike noise)."""
    x = np.linspace(0, 255, width)[None, :]
    y = np.linspace(0, 255, height)[:, None]
    rgb = np.stack(np.broadcast_arrays(x + 0 * y, y + 0 * x, (x + y) / 2), axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB").convert(mode)


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A real decompression bomb: a ~50 KB 1-bit PNG that inflates to ``width x height``.

    20,000 x 20,000 is 400 M pixels, over twice Pillow's default limit of 89 M, so Pillow
    refuses it in ``Image.open`` before decoding anything.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + one bit per pixel
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))


def rotated_jpeg() -> bytes:
    """A 48 x 64 (w x h) JPEG, left half red and right half blue, EXIF orientation 6.

    Orientation 6 means "rotate 90 degrees clockwise to display": shown, it is 64 x 48 with
    red on top and blue at the bottom.
    """
    pixels = np.zeros((64, 48, 3), np.uint8)
    pixels[:, :24] = (255, 0, 0)
    pixels[:, 24:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif.tobytes())


def animated_gif() -> bytes:
    """Two 40 x 40 frames: dark grey (10) first, white second."""
    frames = [Image.new("L", (40, 40), 10), Image.new("L", (40, 40), 255)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def mode_images() -> dict[str, tuple[bytes, str]]:
    """``{file name: (bytes, the mode Pillow reports when opening it)}``, all 40 x 40."""
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([0, 0, 0, 255, 128, 0] + [0] * 762)
    transparent = Image.new("P", (40, 40), 0)
    transparent.putpalette([0, 0, 0] * 256)
    wide = np.full((40, 40), 40_000, np.uint16)
    return {
        "palette.png": (encode(palette), "P"),
        "palette_transparent.png": (encode(transparent, transparency=0), "P"),
        "rgba.png": (encode(Image.new("RGBA", (40, 40), (255, 0, 0, 0))), "RGBA"),
        "la.png": (encode(Image.new("LA", (40, 40), (0, 0))), "LA"),
        "cmyk.jpg": (encode(Image.new("CMYK", (40, 40), (0, 0, 0, 0)), "JPEG"), "CMYK"),
        "gray16.png": (encode(Image.fromarray(wide)), "I;16"),
        "int32.tif": (encode(Image.fromarray(wide.astype(np.int32)), "TIFF"), "I"),
        "float.tif": (encode(Image.fromarray(np.full((40, 40), 0.5, np.float32)), "TIFF"), "F"),
        "gray.png": (encode(Image.new("L", (40, 40), 77)), "L"),
        "bilevel.png": (encode(Image.new("1", (40, 40), 1)), "1"),
        "rgb.webp": (encode(gradient(40, 40), "WEBP"), "RGB"),
    }


def bad_files() -> dict[str, tuple[bytes, str]]:
    """``{relative path: (bytes, expected status)}``, one file per rejection reason
    (``duplicate`` needs a file to duplicate, so it is made by :func:`write_image_cases`)."""
    png, jpeg = encode(gradient()), encode(gradient(), "JPEG", quality=90)
    return {
        "bad/empty.png": (b"", "empty"),
        "bad/not_really.jpg": (b"%PDF-1.4 this is a document, not a picture\n", "not_an_image"),
        "bad/.DS_Store": (b"\x00\x00\x00\x01Bud1" + b"\x00" * 64, "not_an_image"),
        "bad/notes.txt~": (b"a backup file with an odd extension\n", "not_an_image"),
        "bad/truncated.jpg": (jpeg[: len(jpeg) // 2], "corrupt"),
        "bad/truncated.png": (png[: len(png) // 2], "corrupt"),
        "bad/truncated_end.png": (png[:-12], "corrupt"),  # pixels complete, IEND chunk cut
        "bad/bomb.png": (bomb_png(), "too_large"),
        "bad/tiny.png": (encode(gradient(16, 24)), "too_small"),
    }


def write_image_cases(folder: Path, duplicate_of: Path | None = None) -> dict[str, str]:
    """Write every case under ``folder``; return ``{relative path: expected status}``.

    ``duplicate_of``: a file whose bytes are copied to ``zz_copies/duplicate.png`` (after
    it in path order, so the copy is the one marked ``duplicate``); default: a new image
    written first as ``dup/original.png``.
    """
    expected: dict[str, str] = {}
    cases = {path: content for path, (content, _) in bad_files().items()}
    expected.update({path: status for path, (_, status) in bad_files().items()})
    for name, (content, _) in mode_images().items():
        cases[f"modes/{name}"] = content
        expected[f"modes/{name}"] = "ok"
    cases["exif/rotated.jpg"], expected["exif/rotated.jpg"] = rotated_jpeg(), "ok"
    cases["anim/animated.gif"], expected["anim/animated.gif"] = animated_gif(), "ok"
    if duplicate_of is None:
        original = encode(gradient(50, 50))
        cases["dup/original.png"], expected["dup/original.png"] = original, "ok"
    else:
        original = duplicate_of.read_bytes()
    cases["zz_copies/duplicate.png"], expected["zz_copies/duplicate.png"] = original, "duplicate"
    for relative, content in cases.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return expected
