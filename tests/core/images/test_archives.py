"""atelier.core.images.archives: unsafe entries refused whole, safe ones swapped into place."""

from __future__ import annotations

import io
import shutil
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest
from image_cases import encode, gradient

from atelier.core import images
from atelier.core.images import archives
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


# --- Size caps (zip bombs): small caps here, the shipped defaults are in conf/base. ---

CAP = 1_000


def make_archive(tmp_path: Path, kind: str, entries: dict[str, bytes]) -> Path:
    if kind == "zip":
        return make_zip(tmp_path / "upload.zip", entries)
    return make_tar(tmp_path / "upload.tar.gz",
                    [tar_member(name, content=content) for name, content in entries.items()])


def make_lying_zip(path: Path, name: str, content: bytes, claimed: int) -> Path:
    """A zip whose one deflated member holds ``content`` but whose headers claim ``claimed``
    bytes: both ``file_size`` fields (local header at offset 22, central directory entry at
    offset 24) are patched; the central directory's offset is read from the end record."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    data = bytearray(path.read_bytes())
    central = struct.unpack_from("<I", data, len(data) - 6)[0]  # end record, no comment
    assert data[:4] == b"PK\x03\x04" and data[central:central + 4] == b"PK\x01\x02"
    struct.pack_into("<I", data, 22, claimed)
    struct.pack_into("<I", data, central + 24, claimed)
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo(name).file_size == claimed
    return path


@pytest.fixture
def largest_staged(monkeypatch) -> dict[str, int]:
    """Records, when a failed extraction deletes its staging folder, the biggest file in it
    and the bytes in all files: what reached the disk before the refusal."""
    real_rmtree, seen = shutil.rmtree, {"deletions": 0, "file": 0, "total": 0}

    def measuring_rmtree(path, *args, **kwargs):
        sizes = [p.stat().st_size for p in Path(path).rglob("*") if p.is_file()]
        seen["file"] = max([seen["file"], *sizes])
        seen["total"] = max(seen["total"], sum(sizes))
        seen["deletions"] += 1
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(archives.shutil, "rmtree", measuring_rmtree)
    return seen


def readers_ignore_headers(monkeypatch, content: bytes) -> None:
    """Make zipfile and tarfile hand back ``content`` for every member, whatever its
    header says: a reader that trusts the data over the header."""
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *_, **__: io.BytesIO(content))
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda *_, **__: io.BytesIO(content))


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_member_over_the_cap_by_its_header_is_refused_before_writing(tmp_path, kind):
    archive = make_archive(tmp_path, kind, {"a/ok.png": b"x" * 10, "a/big.png": b"x" * 1_001})
    with pytest.raises(UnsafeArchiveError) as error:
        images.extract_archive(archive, tmp_path / "out" / "x", max_member_bytes=CAP)
    message = str(error.value)
    assert str(archive) in message and "'a/big.png' expands to 1,001 bytes" in message
    assert "1,000-byte limit per member (ingestion.max_archive_member_bytes)" in message
    assert_nothing_written(tmp_path, archive)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_total_over_the_cap_by_the_headers_is_refused_before_writing(tmp_path, kind):
    entries = {f"{index}.png": b"x" * 400 for index in range(3)}
    archive = make_archive(tmp_path, kind, entries)
    with pytest.raises(UnsafeArchiveError) as error:
        images.extract_archive(archive, tmp_path / "out" / "x", max_member_bytes=CAP,
                               max_total_bytes=CAP)
    message = str(error.value)
    assert str(archive) in message and "1,000-byte limit for a whole archive" in message
    assert "ingestion.max_archive_total_bytes" in message
    assert "reaches 1,200 bytes at member '2.png'" in message
    assert_nothing_written(tmp_path, archive)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_too_many_members_are_refused_before_writing(tmp_path, kind):
    archive = make_archive(tmp_path, kind, {f"{index}.png": b"x" for index in range(5)})
    with pytest.raises(UnsafeArchiveError) as error:
        images.extract_archive(archive, tmp_path / "out" / "x", max_members=3)
    message = str(error.value)
    assert str(archive) in message and "more than 3 members" in message
    assert "(ingestion.max_archive_members); member '3.png' is past the limit" in message
    assert_nothing_written(tmp_path, archive)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_archive_exactly_at_every_cap_extracts(tmp_path, kind):
    entries = {"a.png": b"a" * 600, "b.png": b"b" * 400}
    archive = make_archive(tmp_path, kind, entries)
    destination = images.extract_archive(archive, tmp_path / "out", max_member_bytes=600,
                                         max_total_bytes=CAP, max_members=2)
    assert {name: (destination / name).read_bytes() for name in entries} == entries


def test_zip_whose_header_lies_never_writes_more_than_it_claims(tmp_path, largest_staged):
    """The member holds 5,000 bytes but both headers claim 500, under the 1,000-byte caps,
    so the header checks pass. CPython's zipfile stops decompressing at the central
    directory's ``file_size`` and then fails the CRC, so the lie ends before our own
    byte count is needed; this pins that nothing past the claim (let alone the cap)
    reaches the disk and the failure is clean. The test below covers our own count."""
    archive = make_lying_zip(tmp_path / "liar.zip", "big.png", b"a" * 5_000, claimed=500)
    # The header checks pass, so a staging folder is made beside the destination, in a
    # parent that already exists (as data/02_intermediate does): it must be gone after.
    with pytest.raises(DataSourceError, match=r"Cannot extract .*liar\.zip.*'big\.png'"):
        images.extract_archive(archive, tmp_path / "x", max_member_bytes=CAP,
                               max_total_bytes=CAP)
    assert largest_staged["deletions"] == 1 and largest_staged["file"] <= 500
    assert_nothing_written(tmp_path, archive)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_member_longer_than_its_header_is_stopped_at_the_cap(tmp_path, kind, monkeypatch,
                                                             largest_staged):
    """zipfile and tarfile themselves never yield more than a header claims, so a reader
    that does (another library, a bug, a format quirk) is simulated by making them return
    5,000 bytes for a member whose header says 10: the write must stop at the 1,000-byte
    cap, with no byte past it on disk, and the staging folder deleted."""
    archive = make_archive(tmp_path, kind, {"big.png": b"x" * 10})
    readers_ignore_headers(monkeypatch, b"a" * 5_000)
    with pytest.raises(UnsafeArchiveError) as error:
        images.extract_archive(archive, tmp_path / "x", max_member_bytes=CAP)
    message = str(error.value)
    assert str(archive) in message and "'big.png' expands to more than the 1,000-byte" in message
    assert "(ingestion.max_archive_member_bytes) although its header claims 10 bytes" in message
    # The chunk that would pass the cap is refused whole: no byte past it reaches the disk.
    assert largest_staged["deletions"] == 1 and largest_staged["file"] <= CAP
    assert_nothing_written(tmp_path, archive)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_members_longer_than_their_headers_are_stopped_at_the_total_cap(
        tmp_path, kind, monkeypatch, largest_staged):
    """Three members claim 10 bytes each but yield 400 (simulated as above): the running
    total passes the 1,000-byte cap in the third, where the write stops."""
    archive = make_archive(tmp_path, kind, {f"{index}.png": b"x" * 10 for index in range(3)})
    readers_ignore_headers(monkeypatch, b"a" * 400)
    with pytest.raises(UnsafeArchiveError) as error:
        images.extract_archive(archive, tmp_path / "x", max_member_bytes=CAP,
                               max_total_bytes=CAP)
    message = str(error.value)
    assert str(archive) in message and "1,000-byte limit for a whole archive" in message
    assert "ingestion.max_archive_total_bytes" in message and "member '2.png'" in message
    assert largest_staged["deletions"] == 1 and largest_staged["total"] <= CAP
    assert_nothing_written(tmp_path, archive)


def test_caps_leave_the_previous_extraction_intact(tmp_path):
    destination = images.extract_archive(make_zip(tmp_path / "first.zip", {"old.png": b"o"}),
                                         tmp_path / "out")
    archive = make_zip(tmp_path / "second.zip", {"new.png": b"n" * 2_000})
    with pytest.raises(UnsafeArchiveError, match="'new.png'"):
        images.extract_archive(archive, destination, max_member_bytes=CAP)
    assert images.list_files(destination) == ["old.png"]
