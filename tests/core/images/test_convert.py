"""atelier.core.images.convert: modes, resizing and cropping, parallel loading, PNG bytes."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from image_cases import RESOLUTION, animated_gif, encode, gradient, mode_images, rotated_jpeg
from PIL import Image

from atelier.core import images
from atelier.errors import DataSourceError


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(("name", "gray", "rgb"), [
    ("palette.png", 151, (255, 128, 0)),
    ("palette_transparent.png", 255, (255, 255, 255)),  # transparent -> white
    ("rgba.png", 255, (255, 255, 255)),  # fully transparent red -> white, not red
    ("la.png", 255, (255, 255, 255)),
    ("cmyk.jpg", 255, (255, 255, 255)),  # no ink is white
    ("gray16.png", 156, (156, 156, 156)),  # 40000 / 65535 * 255, scaled not clipped
    ("int32.tif", 156, (156, 156, 156)),
    ("float.tif", 128, (128, 128, 128)),  # 0.5 of [0, 1]
    ("gray.png", 77, (77, 77, 77)),
    ("bilevel.png", 255, (255, 255, 255)),
])
def test_modes_convert_to_the_right_values(tmp_path, name, gray, rgb):
    path = write(tmp_path / name, mode_images()[name][0])
    _, one = images.load_training_image(path, RESOLUTION, 1)
    _, three = images.load_training_image(path, RESOLUTION, 3)
    assert one.shape == (1, RESOLUTION, RESOLUTION) and one.dtype == np.uint8
    assert three.shape == (3, RESOLUTION, RESOLUTION)
    assert np.abs(one.astype(int) - gray).max() <= 1
    assert np.abs(three.reshape(3, -1).astype(int) - np.array(rgb)[:, None]).max() <= 1


def test_half_transparent_black_composites_to_mid_grey(tmp_path):
    path = write(tmp_path / "a.png", encode(Image.new("RGBA", (40, 40), (0, 0, 0, 128))))
    _, array = images.load_training_image(path, RESOLUTION, 1)
    assert np.all(np.abs(array.astype(int) - 127) <= 1)


def test_exif_rotation_and_first_frame_are_used_for_training(tmp_path):
    _, rotated = images.load_training_image(write(tmp_path / "r.jpg", rotated_jpeg()), 32, 3)
    top, bottom = rotated[:, :8].reshape(3, -1).mean(1), rotated[:, -8:].reshape(3, -1).mean(1)
    assert top[0] > 240 and top[2] < 15  # red on top
    assert bottom[2] > 240 and bottom[0] < 15  # blue at the bottom
    _, frame = images.load_training_image(write(tmp_path / "a.gif", animated_gif()), 32, 1)
    assert np.all(frame == 10)  # the first (dark) frame, not the white second one


def test_shorter_side_is_resized_then_centre_cropped(tmp_path):
    pixels = np.zeros((64, 128), np.uint8)
    pixels[:, 32:96] = 255  # a white centre square between two black margins
    path = write(tmp_path / "wide.png", encode(Image.fromarray(pixels)))
    _, array = images.load_training_image(path, 32, 1)
    assert array.shape == (1, 32, 32)
    assert np.all(array[0, :, 3:-3] == 255)  # the margins were cropped away
    assert array[0, :, [0, -1]].min() > 200  # only the antialiasing kernel sees them


def test_downscaling_is_antialiased(tmp_path):
    checkerboard = (np.indices((256, 256)).sum(0) % 2 * 255).astype(np.uint8)
    path = write(tmp_path / "c.png", encode(Image.fromarray(checkerboard)))
    _, array = images.load_training_image(path, 32, 1)
    assert np.abs(array.astype(int) - 128).max() <= 2  # averaged, not aliased to 0 or 255


def test_large_jpeg_decoded_at_reduced_scale_matches_a_full_decode(tmp_path):
    photo = gradient(1600, 1200)
    path = write(tmp_path / "big.jpg", encode(photo, "JPEG", quality=95))
    _, fast = images.load_training_image(path, 64, 3)
    with Image.open(path) as full:  # the plain way: full decode, then the same resampling
        reference = np.asarray(images.resize_center_crop(full.convert("RGB"), 64))
    assert np.abs(fast.transpose(1, 2, 0).astype(int) - reference).mean() < 2


def test_small_images_are_upscaled_when_asked(tmp_path):
    path = write(tmp_path / "s.png", encode(gradient(16, 20)))
    _, array = images.load_training_image(path, 32, 3)
    assert array.shape == (3, 32, 32)


def test_undecodable_file_raises_a_clear_error(tmp_path):
    path = write(tmp_path / "gone.png", b"not an image")
    with pytest.raises(DataSourceError, match="Cannot decode .*gone.png"):
        images.load_training_image(path, 32, 1)


def test_load_training_images_parallel_matches_serial(tmp_path):
    paths = []
    for index in range(70):
        write(tmp_path / f"{index:03d}.png", encode(gradient(40 + index, 48, "L")))
        paths.append(f"{index:03d}.png")
    serial, sha_serial = images.load_training_images(tmp_path, paths, 32, 1, workers=1)
    parallel, sha_parallel = images.load_training_images(tmp_path, paths, 32, 1, workers=2)
    assert serial.shape == (70, 1, 32, 32) and serial.dtype == torch.uint8
    assert torch.equal(serial, parallel) and sha_serial == sha_parallel
    assert sha_serial[5] == hashlib.sha256((tmp_path / "005.png").read_bytes()).hexdigest()


def test_encode_png_is_deterministic_and_carries_no_metadata():
    image = gradient(64, 64, "L")
    first, second = images.encode_png(image), images.encode_png(image.copy())
    assert first == second
    assert b"tIME" not in first and b"tEXt" not in first
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(first))), np.asarray(image))
