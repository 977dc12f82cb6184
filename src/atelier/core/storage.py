"""Crash-safe file writes shared by checkpoints and the catalog's datasets."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(
    path: str | Path, write: Callable[[BinaryIO], object], fsync: bool = True
) -> None:
    """Write ``path`` so that readers see either the old file or the complete new one.

    ``write`` receives a binary handle on a temporary file in the same folder; the file is
    flushed, fsynced and renamed over ``path`` (``os.replace`` is atomic on POSIX), and the
    folder is fsynced so the rename itself survives a power cut. A failure leaves ``path``
    untouched and removes the temporary file. ``fsync=False`` keeps the atomic rename but
    skips both syncs, for writers of many small files that sync once at the end.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if not fsync:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
