"""Unpack a ``.zip`` / ``.tar[.gz|.bz2|.xz]`` / ``.tgz`` safely, or refuse it whole.

Every entry is checked before anything is written, so a hostile archive (absolute paths,
``..``, links, devices, too many members, members or a total too large by their headers)
writes nothing at all; sizes are counted again while writing, so a header that lies stops
the write at the cap. The new tree is staged beside the destination and swapped into
place, so a failure leaves the previous extraction intact.
"""

from __future__ import annotations

import io
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm.auto import tqdm

from atelier.core.errors import DataSourceError, UnsafeArchiveError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_CHUNK = 1 << 20
_HOW_TO_RAISE = ("Nothing was extracted. If the archive is trusted, raise {parameter} in "
                 "conf/base/parameters_data_ingestion.yml (null = no limit), or unpack it "
                 "yourself and use the folder as the source.")


@dataclass
class _Caps:
    """One extraction's size limits (None = no limit) and the bytes written against them."""

    archive: Path
    member_bytes: int | None
    total_bytes: int | None
    members: int | None
    written: int = 0  # all members together, counted as they reach the disk
    progress: Any = None  # a tqdm bar counting the bytes written (shown on a terminal only)


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


def _tar_entries(archive: tarfile.TarFile,
                 max_members: int | None) -> list[tuple[str, str | None, Any]]:
    entries = []
    for member in archive:  # lazily, so a tar of millions of headers is read only to the cap
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
        if max_members is not None and len(entries) > max_members:
            break  # one past the cap is enough for _check_entries to refuse the archive
    return entries


def _is_folder(info: zipfile.ZipInfo | tarfile.TarInfo) -> bool:
    return info.is_dir() if isinstance(info, zipfile.ZipInfo) else info.isdir()


def _header_size(info: zipfile.ZipInfo | tarfile.TarInfo) -> int:
    return info.file_size if isinstance(info, zipfile.ZipInfo) else info.size


def _check_entries(archive_path: Path, destination: Path,
                   entries: list[tuple[str, str | None, Any]], caps: _Caps) -> None:
    if caps.members is not None and len(entries) > caps.members:
        raise UnsafeArchiveError(
            f"Refusing to extract {archive_path}: it holds more than {caps.members:,} members "
            f"(ingestion.max_archive_members); member {entries[caps.members][0]!r} is past "
            "the limit. " + _HOW_TO_RAISE.format(parameter="ingestion.max_archive_members")
        )
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
    _check_header_sizes(archive_path, entries, caps)


def _check_header_sizes(archive_path: Path, entries: list[tuple[str, str | None, Any]],
                        caps: _Caps) -> None:
    """Refuse a member, or the running total, that its header already says is over a cap."""
    total = 0
    for name, _, info in entries:
        if _is_folder(info):
            continue
        size = _header_size(info)
        total += size
        if caps.member_bytes is not None and size > caps.member_bytes:
            raise UnsafeArchiveError(
                f"Refusing to extract {archive_path}: member {name!r} expands to {size:,} "
                f"bytes, more than the {caps.member_bytes:,}-byte limit per member "
                "(ingestion.max_archive_member_bytes). "
                + _HOW_TO_RAISE.format(parameter="ingestion.max_archive_member_bytes")
            )
        if caps.total_bytes is not None and total > caps.total_bytes:
            raise UnsafeArchiveError(
                f"Refusing to extract {archive_path}: its members expand to more than the "
                f"{caps.total_bytes:,}-byte limit for a whole archive "
                f"(ingestion.max_archive_total_bytes); the total reaches {total:,} bytes at "
                f"member {name!r}. "
                + _HOW_TO_RAISE.format(parameter="ingestion.max_archive_total_bytes")
            )


def extract_archive(archive: str | Path, destination: str | Path, *,
                    max_member_bytes: int | None = None, max_total_bytes: int | None = None,
                    max_members: int | None = None) -> Path:
    """Unpack ``archive`` into ``destination`` (replacing what an earlier call put there).

    Every entry is checked before anything is written: absolute paths, ``..`` components,
    symbolic and hard links, devices and FIFOs raise :class:`UnsafeArchiveError` naming
    the entries, and nothing is extracted. Only regular files and folders are written, as
    plain files (no permissions, owners or timestamps from the archive).

    Size caps (None = no limit), each refused with :class:`UnsafeArchiveError` naming the
    archive, the member, the limit and the ``ingestion.*`` parameter that sets it:
    ``max_members`` entries (files and folders); ``max_member_bytes`` uncompressed bytes in
    one member; ``max_total_bytes`` uncompressed bytes in all members together. The sizes
    in the archive's headers (zip ``file_size``, tar ``size``) are checked before anything
    is written; the bytes actually written are counted too, so a member whose header lies
    stops at the cap, and the partial extraction is deleted. Nothing over a cap reaches
    the disk.

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
    caps = _Caps(archive, max_member_bytes, max_total_bytes, max_members,
                 progress=tqdm(desc=f"extracting {archive.name}", unit="B", unit_scale=True,
                               disable=None, dynamic_ncols=True))
    staging: Path | None = None
    try:
        if str(archive).lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as opened:
                entries = _zip_entries(opened)
                _check_entries(archive, destination, entries, caps)
                staging = _stage(destination)
                for name, _, info in entries:
                    if not _is_folder(info):
                        with opened.open(info) as source:
                            _write_entry(staging, name, source, caps, info.file_size)
        else:
            with tarfile.open(archive, "r:*") as opened:
                entries = _tar_entries(opened, max_members)
                _check_entries(archive, destination, entries, caps)
                staging = _stage(destination)
                for name, _, member in entries:
                    if member.isfile():
                        source = opened.extractfile(member)
                        assert source is not None  # regular members always have content
                        _write_entry(staging, name, source, caps, member.size)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, RuntimeError, OSError,
            zlib.error) as error:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise DataSourceError(f"Cannot extract {archive} into {destination}: {error}") from None
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        caps.progress.close()
    _swap_into_place(staging, destination)
    record.write_text(f"{archive.resolve()}\n")
    return destination


def _stage(destination: Path) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}."))


def _write_entry(staging: Path, name: str, source: io.IOBase, caps: _Caps,
                 claimed: int) -> None:
    target = staging.joinpath(*PurePosixPath(name.replace("\\", "/")).parts)
    # Belt and braces: the names were checked already, but never write outside staging.
    if not target.resolve().is_relative_to(staging.resolve()):
        raise UnsafeArchiveError(f"Archive entry {name!r} resolves outside the extraction folder.")
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("xb") as handle:  # "x": never follow or overwrite something already there
        _copy_capped(source, handle, name, caps, claimed)


def _copy_capped(source: io.IOBase, handle: io.IOBase, name: str, caps: _Caps,
                 claimed: int) -> None:
    """Copy in chunks, refusing the first chunk that would take the member or the total
    over its cap, so no byte past a cap is written whatever the header claimed."""
    member_written = 0
    while True:
        member_room = None if caps.member_bytes is None else caps.member_bytes - member_written
        total_room = None if caps.total_bytes is None else caps.total_bytes - caps.written
        rooms = [room for room in (member_room, total_room) if room is not None]
        # Ask for one byte more than the room left: getting it proves the member is over.
        chunk = source.read(min([_CHUNK, *(room + 1 for room in rooms)]))
        if not chunk:
            return
        if member_room is not None and len(chunk) > member_room:
            raise UnsafeArchiveError(
                f"Refusing to extract {caps.archive}: member {name!r} expands to more than "
                f"the {caps.member_bytes:,}-byte limit per member "
                f"(ingestion.max_archive_member_bytes) although its header claims "
                f"{claimed:,} bytes; the write was stopped at the limit. "
                + _HOW_TO_RAISE.format(parameter="ingestion.max_archive_member_bytes")
            )
        if total_room is not None and len(chunk) > total_room:
            raise UnsafeArchiveError(
                f"Refusing to extract {caps.archive}: its members expand to more than the "
                f"{caps.total_bytes:,}-byte limit for a whole archive "
                f"(ingestion.max_archive_total_bytes), although their headers claim less; "
                f"the write was stopped at the limit in member {name!r}. "
                + _HOW_TO_RAISE.format(parameter="ingestion.max_archive_total_bytes")
            )
        handle.write(chunk)
        member_written += len(chunk)
        caps.written += len(chunk)
        caps.progress.update(len(chunk))


def _swap_into_place(staging: Path, destination: Path) -> None:
    if destination.exists():
        retired = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.old."))
        destination.rename(retired / destination.name)
        staging.rename(destination)
        shutil.rmtree(retired)
    else:
        staging.rename(destination)
