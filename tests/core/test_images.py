"""atelier.core.images: inspection statuses, conversions, archives, parallel decoding."""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
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
from atelier.errors import DataSourceError, UnsafeArchiveError


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


# --- archives ---------------------------------------------------------------------------


def make_zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(zipfile.ZipInfo(name), content)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, content: bytes = b"x",
               linkname: str = "") -> tuple[tarfile.TarInfo, io.BytesIO | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind == tarfile.REGTYPE:
        info.size = len(content)
        return info, io.BytesIO(content)
    return info, None


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, io.BytesIO | None]]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info, content in members:
            archive.addfile(info, content)
    return path


def assert_nothing_written(tmp_path: Path, archive: Path) -> None:
    """The archive is still the only thing under tmp_path: no file, no folder, no staging."""
    assert list(tmp_path.rglob("*")) == [archive]


@pytest.mark.parametrize(("name", "reason"), [
    ("../evil.png", "contains '..'"),
    ("ok/../../evil.png", "contains '..'"),
    ("/tmp/evil.png", "is an absolute path"),
    ("C:/evil.png", "is an absolute path"),
    ("..\\evil.png", "contains '..'"),
])
def test_zip_entries_outside_the_folder_are_refused_before_extracting(tmp_path, name, reason):
    archive = make_zip(tmp_path / "upload.zip", {"good/one.png": b"fine", name: b"evil"})
    destination = tmp_path / "out" / "extracted"
    with pytest.raises(UnsafeArchiveError) as error:
        images.extract_archive(archive, destination)
    assert repr(name) in str(error.value) and reason in str(error.value)
    assert "Nothing was extracted" in str(error.value)
    assert_nothing_written(tmp_path, archive)


def test_zip_symlink_is_refused(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"one.png": b"x"}, links={"evil.png": "/etc/passwd"})
    destination = tmp_path / "out" / "x"
    with pytest.raises(UnsafeArchiveError, match="'evil.png' is a symbolic link"):
        images.extract_archive(archive, destination)
    assert_nothing_written(tmp_path, archive)


@pytest.mark.parametrize(("member", "reason"), [
    (tar_member("evil.png", tarfile.SYMTYPE, linkname="/etc/passwd"), "symbolic link"),
    (tar_member("evil.png", tarfile.LNKTYPE, linkname="/etc/passwd"), "hard link"),
    (tar_member("evil", tarfile.CHRTYPE), "device"),
    (tar_member("evil", tarfile.FIFOTYPE), "FIFO"),
    (tar_member("../evil.png"), "contains '..'"),
    (tar_member("/evil.png"), "absolute path"),
])
def test_tar_links_devices_and_escapes_are_refused(tmp_path, member, reason):
    archive = make_tar(tmp_path / "a.tar.gz", [tar_member("good/one.png"), member])
    destination = tmp_path / "out" / "x"
    with pytest.raises(UnsafeArchiveError, match=reason):
        images.extract_archive(archive, destination)
    assert_nothing_written(tmp_path, archive)


def test_safe_archives_extract_and_replace_the_previous_extraction(tmp_path):
    png = encode(gradient(40, 40))
    destination = tmp_path / "out" / "extracted"
    make_zip(tmp_path / "first.zip", {"a/one.png": png, "stale.png": png, "dir/": b""})
    images.extract_archive(tmp_path / "first.zip", destination)
    assert images.list_files(destination) == ["a/one.png", "stale.png"]
    make_tar(tmp_path / "second.tgz", [tar_member("b/two.png", content=png)])
    images.extract_archive(tmp_path / "second.tgz", destination)
    assert images.list_files(destination) == ["b/two.png"]  # nothing left from the first
    assert (destination / "b/two.png").read_bytes() == png
    assert not [p for p in destination.parent.iterdir() if p.name.startswith(".")]


def test_extraction_never_replaces_a_folder_it_did_not_create(tmp_path):
    write(tmp_path / "precious" / "thesis.tex", b"years of work")
    archive = make_zip(tmp_path / "a.zip", {"one.png": b"x"})
    with pytest.raises(DataSourceError, match="not extracted by Atelier"):
        images.extract_archive(archive, tmp_path / "precious")
    assert (tmp_path / "precious" / "thesis.tex").read_bytes() == b"years of work"


def test_damaged_archive_and_repeated_entries_fail_clearly(tmp_path):
    write(tmp_path / "junk.zip", b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DataSourceError, match="Cannot extract"):
        images.extract_archive(tmp_path / "junk.zip", tmp_path / "out")
    make_tar(tmp_path / "twice.tar.gz", [tar_member("a.png"), tar_member("a.png")])
    with pytest.raises(DataSourceError, match="several entries named 'a.png'"):
        images.extract_archive(tmp_path / "twice.tar.gz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_is_archive_and_image_root():
    assert all(images.is_archive(f"x{s}") for s in (".zip", ".tar", ".tar.gz", ".tgz", ".ZIP"))
    assert not images.is_archive("data/01_raw/images")
    assert images.image_root("a.zip", "ex") == Path("ex")
    assert images.image_root("folder", "ex") == Path("folder")


# --- conversion for training ------------------------------------------------------------


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


# --- split and identity -----------------------------------------------------------------


def test_validation_split_depends_on_each_hash_only():
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(10_000)]
    is_val = images.assign_validation(hashes, 0.2)
    assert is_val.dtype == torch.bool
    assert 0.18 < is_val.float().mean().item() < 0.22
    more = images.assign_validation(hashes[:5_000] + ["f" * 64, "0" * 64] + hashes[5_000:], 0.2)
    assert torch.equal(more[:5_000], is_val[:5_000]) and torch.equal(more[5_002:], is_val[5_000:])
    assert more[5_000].item() is False and more[5_001].item() is True
    assert not images.assign_validation(hashes, 0.0).any()


def test_content_hash_names_the_image_set_and_its_shape():
    hashes = ["a" * 64, "b" * 64]
    base = images.hash_dataset_content(hashes, 32, 1)
    assert base == images.hash_dataset_content(list(reversed(hashes)), 32, 1)  # a set
    assert len({base, images.hash_dataset_content(hashes, 64, 1),
                images.hash_dataset_content(hashes, 32, 3),
                images.hash_dataset_content(hashes[:1], 32, 1)}) == 4


def test_encode_png_is_deterministic_and_carries_no_metadata():
    image = gradient(64, 64, "L")
    first, second = images.encode_png(image), images.encode_png(image.copy())
    assert first == second
    assert b"tIME" not in first and b"tEXt" not in first
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(first))), np.asarray(image))


def test_core_images_imports_no_pipeline_framework():
    source = Path(images.__file__).read_text()
    for name in ("kedro", "mlflow", "dvc", "pandas"):
        assert f"import {name}" not in source and f"from {name}" not in source
