"""atelier.core.images.inspection: one status per bad kind, scanning, parallel decoding."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from image_cases import (
    RESOLUTION,
    animated_gif,
    bad_files,
    encode,
    gradient,
    mode_images,
    rotated_jpeg,
    write_image_cases,
)
from PIL import Image

from atelier.core import images


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def inspect(tmp_path: Path, name: str, content: bytes, **limits) -> images.ImageInspection:
    write(tmp_path / name, content)
    limits.setdefault("min_side", RESOLUTION)
    return images.inspect_image(tmp_path, name, **limits)


# --- one status per bad kind ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(bad_files()))
def test_each_bad_kind_gets_its_status(tmp_path, name):
    content, status = bad_files()[name]
    found = inspect(tmp_path, name, content)
    assert found.status == status, found.detail
    assert found.path == name
    assert found.bytes == len(content)
    assert found.sha256 == hashlib.sha256(content).hexdigest()
    assert found.detail  # every rejection says why


def test_truncated_png_is_corrupt_even_when_only_the_end_chunk_is_missing(tmp_path):
    png = encode(gradient())
    # Pillow decodes these pixels happily; only the missing IEND chunk gives them away.
    for cut in (1, 4, 12, 20):
        found = inspect(tmp_path, f"cut{cut}.png", png[:-cut])
        assert found.status == "corrupt", (cut, found)
    assert inspect(tmp_path, "whole.png", png).status == "ok"


def test_truncated_jpeg_is_corrupt_wherever_it_is_cut(tmp_path):
    jpeg = encode(gradient(64, 64), "JPEG", quality=90)
    for cut in (len(jpeg) // 4, len(jpeg) // 2, len(jpeg) - 100):
        assert inspect(tmp_path, f"cut{cut}.jpg", jpeg[:cut]).status == "corrupt"


def test_decompression_bomb_limit_is_configurable(tmp_path):
    content = encode(gradient(100, 100))  # 10,000 pixels
    # Pillow warns between 1x and 2x its limit and raises above; both are too_large.
    warned = inspect(tmp_path, "a.png", content, max_image_pixels=6_000)
    refused = inspect(tmp_path, "b.png", content, max_image_pixels=4_000)
    assert (warned.status, refused.status) == ("too_large", "too_large")
    assert "10000 pixels" in refused.detail
    assert inspect(tmp_path, "c.png", content, max_image_pixels=None).status == "ok"
    # The per-call limit never leaks into Pillow's global setting.
    assert Image.MAX_IMAGE_PIXELS == 89_478_485


def test_file_size_limit_rejects_without_decoding(tmp_path):
    content = encode(gradient(64, 64))
    found = inspect(tmp_path, "big.png", content, max_file_bytes=len(content) - 1)
    assert found.status == "too_large"
    assert found.sha256 == hashlib.sha256(content).hexdigest()  # still hashed, for the record
    assert inspect(tmp_path, "fits.png", content, max_file_bytes=len(content)).status == "ok"


def test_small_images_are_too_small_unless_upscaling_is_allowed(tmp_path):
    content = encode(gradient(31, 200))
    assert inspect(tmp_path, "s.png", content).status == "too_small"
    assert inspect(tmp_path, "s.png", content, min_side=0).status == "ok"
    assert inspect(tmp_path, "e.png", encode(gradient(32, 32))).status == "ok"  # boundary


@pytest.mark.parametrize("name", sorted(mode_images()))
def test_every_mode_is_accepted_and_recorded(tmp_path, name):
    content, mode = mode_images()[name]
    found = inspect(tmp_path, name, content)
    assert (found.status, found.mode, found.width, found.height) == ("ok", mode, 40, 40)


def test_exif_rotation_is_applied_to_the_recorded_size(tmp_path):
    found = inspect(tmp_path, "r.jpg", rotated_jpeg())
    assert (found.status, found.width, found.height) == ("ok", 64, 48)  # stored as 48 x 64


def test_animated_image_is_accepted(tmp_path):
    found = inspect(tmp_path, "a.gif", animated_gif())
    assert (found.status, found.width, found.height) == ("ok", 40, 40)


def test_unreadable_file_is_recorded_not_raised(tmp_path):
    (tmp_path / "broken.png").symlink_to(tmp_path / "nowhere.png")
    found = images.inspect_image(tmp_path, "broken.png")
    assert found.status == "unreadable"


# --- scanning ---------------------------------------------------------------------------


def test_scan_lists_every_file_once_in_path_order(tmp_path):
    expected = write_image_cases(tmp_path)
    found = images.scan_images(tmp_path, min_side=RESOLUTION, workers=1)
    assert [f.path for f in found] == sorted(expected)
    assert {f.path: f.status for f in found} == expected


def test_scan_keeps_the_first_duplicate_in_path_order(tmp_path):
    content = encode(gradient(40, 40))
    for name in ("b/x.png", "a/x.png", "c.png"):
        write(tmp_path / name, content)
    found = images.scan_images(tmp_path, workers=1)
    assert [(f.path, f.status) for f in found] == [
        ("a/x.png", "ok"), ("b/x.png", "duplicate"), ("c.png", "duplicate")]
    assert "a/x.png" in found[1].detail


def test_identical_rejected_files_keep_their_own_reason(tmp_path):
    write(tmp_path / "a.png", b"")
    write(tmp_path / "b.png", b"")
    assert [f.status for f in images.scan_images(tmp_path, workers=1)] == ["empty", "empty"]


def test_scan_follows_folder_links_once(tmp_path):
    write(tmp_path / "real/one.png", encode(gradient(40, 41)))
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "loop").symlink_to(tmp_path / "real")
    paths = [f.path for f in images.scan_images(tmp_path, workers=1)]
    # Each folder is walked once, whichever way it is reached first.
    assert len(paths) == 1 and paths[0].endswith("one.png")


def test_parallel_scan_matches_serial_scan(tmp_path):
    for index in range(80):  # above the threshold where processes are used
        write(tmp_path / f"{index % 7}/{index:03d}.png", encode(gradient(33 + index, 40)))
    write_image_cases(tmp_path / "cases")
    serial = images.scan_images(tmp_path, min_side=RESOLUTION, workers=1)
    parallel = images.scan_images(tmp_path, min_side=RESOLUTION, workers=2)
    assert parallel == serial
    assert len(serial) == len([p for p in tmp_path.rglob("*") if p.is_file()])


def test_resolve_workers():
    assert images.resolve_workers(3) == 3
    assert images.resolve_workers(None) >= 1
    with pytest.raises(ValueError, match="at least 1"):
        images.resolve_workers(0)



# --- layering ---------------------------------------------------------------------------


def test_core_images_imports_no_pipeline_framework():
    for module in sorted(Path(images.__file__).parent.glob("*.py")):
        source = module.read_text()
        for name in ("kedro", "mlflow", "dvc", "pandas"):
            assert f"import {name}" not in source and f"from {name}" not in source, module
