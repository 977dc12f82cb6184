"""atelier.core.images.archives: unsafe entries refused whole, safe ones swapped into place."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from image_cases import encode, gradient

from atelier.core import images
from atelier.errors import DataSourceError, UnsafeArchiveError


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


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
